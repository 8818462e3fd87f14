// Identifiers and the sampling decision.
import { sha256hex } from "./sha256.js";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
export const ID_PATTERN = /^[A-Za-z0-9-]{1,70}$/;

/** A random id of `length` characters of [A-Za-z0-9-] (crypto.getRandomValues). */
export function randomId(length = 22, crypto = globalThis.crypto) {
  let out = "";
  while (out.length < length) {
    const bytes = crypto.getRandomValues(new Uint8Array(length * 2));
    for (let i = 0; i < bytes.length && out.length < length; i++) {
      const v = bytes[i] & 63;
      if (v < ALPHABET.length) out += ALPHABET[v]; // 63 symbols: reject the 64th
    }
  }
  return out;
}

/**
 * The deterministic sampling decision of a session (the gateway can repeat
 * it): parseInt(sha256hex(session).slice(0, 8), 16) / 2**32 < sampleRate.
 */
export function sampledIn(session, sampleRate) {
  const rate = typeof sampleRate === "number" && sampleRate === sampleRate ? sampleRate : 1;
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  return parseInt(sha256hex(session).slice(0, 8), 16) / 4294967296 < rate;
}
