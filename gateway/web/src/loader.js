// Entry point of the recorder bundle (gateway/web/dist/recorder.js).
import { main } from "./main.js";

try {
  if (typeof window !== "undefined" && typeof document !== "undefined") main(window, document);
} catch (e) {
  // The page never sees an exception from the recorder.
}
