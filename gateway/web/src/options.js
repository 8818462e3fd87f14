// rrweb record() options that follow the site's settings.
import { maskInputValue, maskTextNode } from "./mask.js";

// Every input type whose value can hold something typed, plus the tag names:
// rrweb then calls maskInputFn for all of them and the function decides.
// (maskAllInputs is not passed: rrweb would replace this list by its own,
// which leaves hidden inputs out.)
export const MASK_INPUT_OPTIONS = {
  input: true,
  textarea: true,
  select: true,
  color: true,
  date: true,
  "datetime-local": true,
  email: true,
  file: true,
  hidden: true,
  month: true,
  number: true,
  password: true,
  range: true,
  search: true,
  tel: true,
  text: true,
  time: true,
  url: true,
  week: true,
};

export const BLOCK_SELECTOR = "[data-rec-block], .rr-block";

export function recordOptions(settings, emit) {
  return {
    emit,
    maskInputOptions: MASK_INPUT_OPTIONS,
    maskInputFn: (text, element) => maskInputValue(text, element, settings),
    // Every text node goes through maskTextFn, which blanks [data-rec-mask] /
    // .rr-mask areas and masks emails, numbers and card numbers elsewhere.
    maskTextSelector: "*",
    maskTextFn: (text, element) => maskTextNode(text, element, settings),
    blockClass: "rr-block",
    blockSelector: BLOCK_SELECTOR,
    recordCanvas: false,
    collectFonts: false,
    inlineImages: false,
    recordCrossOriginIframes: false,
    slimDOMOptions: "all",
    sampling: { mousemove: 50, scroll: 150, media: 800, input: "last" },
    // rrweb's observers call this on an exception: swallowed, the page never sees it.
    errorHandler: () => true,
  };
}
