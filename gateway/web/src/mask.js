// Masking done in the page, before anything leaves it. Every mask has a
// constant length: a mask must not reveal how long the secret was.

export const INPUT_MASK = "********";
export const EMAIL_MASK = "***@***";
export const NUMBER_MASK = "***";
export const CARD_MASK = "**** **** **** ****";

/** Luhn checksum over a string of digits. */
export function luhn(digits) {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function isCard(digits) {
  return digits.length >= 13 && digits.length <= 19 && luhn(digits);
}

// Digits, possibly grouped by single spaces or dashes ("4111 1111-1111 1111").
const DIGIT_GROUPS = /\d(?:[ -]?\d)*/g;

/** Replaces every Luhn-valid run of 13-19 digits (grouped or not) with CARD_MASK. */
export function maskCards(text) {
  return text.replace(DIGIT_GROUPS, maskCardsInRun);
}

function maskCardsInRun(run) {
  const digits = run.replace(/\D/g, "");
  if (digits.length < 13) return run;
  if (isCard(digits)) return CARD_MASK;
  // A card inside a longer run ("4111 1111 1111 1111 2029"): try the
  // consecutive groups, earliest start first.
  const parts = run.split(/([ -])/); // group, separator, group, ...
  for (let i = 0; i < parts.length; i += 2) {
    let acc = "";
    for (let j = i; j < parts.length; j += 2) {
      acc += parts[j];
      if (acc.length > 19) break;
      if (isCard(acc)) {
        return parts.slice(0, i).join("") + CARD_MASK + maskCards(parts.slice(j + 1).join(""));
      }
    }
  }
  return run;
}

// Emails: deliberately loose (masking a non-email costs less than leaking one),
// but stopping at URL delimiters so "?email=a@b.com&x=1" keeps "?email=" and "&x=1".
const EMAIL = /[^\s@<>()[\]\\,;:"?&=#/]+@[^\s@<>()[\]\\,;:"'.?&=#/!*+%]+(?:\.[^\s@<>()[\]\\,;:"'.?&=#/!*+%]+)+/g;
// Numbers: a run of digits, with the separators of one formatted number in it.
const NUMBER = /\d(?:[\d.,]*\d)?/g;

/**
 * Masks free text: card numbers (Luhn-valid 13-19 digits) always, emails when
 * `emails`, every other run of digits when `numbers`.
 */
export function maskText(text, opts) {
  if (typeof text !== "string" || !text) return text;
  const hasDigit = /\d/.test(text);
  const hasAt = text.indexOf("@") >= 0;
  if (!hasDigit && !hasAt) return text;
  let out = hasDigit ? maskCards(text) : text;
  if (opts && opts.emails && hasAt) out = out.replace(EMAIL, EMAIL_MASK);
  if (opts && opts.numbers && hasDigit) out = out.replace(NUMBER, NUMBER_MASK);
  return out;
}

/** Text of an element the site marked for masking: layout kept, content gone. */
export function blankText(text) {
  return text.replace(/\S/g, "*");
}

/**
 * Masks the query string and fragment of a URL (emails when `emails`, card
 * numbers always); the origin and path are left alone.
 */
export function maskUrl(href, opts) {
  if (typeof href !== "string") return href;
  const cut = href.search(/[?#]/);
  if (cut < 0) return href;
  const tail = href.slice(cut).replace(/%40/gi, "@");
  return href.slice(0, cut) + maskText(tail, { emails: !!(opts && opts.emails), numbers: false });
}

const MASK_SELECTOR = "[data-rec-mask], .rr-mask";
const SECRET_AUTOCOMPLETE =
  /(?:^|\s)(?:cc-number|cc-csc|cc-exp|cc-exp-month|cc-exp-year|current-password|new-password|one-time-code)(?:\s|$)/i;
const SECRET_NAME = /passw|passwd|pwd|card.?num|cc.?num|cvv|cvc|csc|security.?code|iban|ssn|secret|token/i;
// Input types whose value is a label or a fixed choice, not something typed.
const LABEL_TYPES = { submit: 1, button: 1, reset: 1, image: 1, checkbox: 1, radio: 1 };

function attr(el, name) {
  try {
    return (el && el.getAttribute && el.getAttribute(name)) || "";
  } catch (e) {
    return "";
  }
}

function inMaskedArea(el) {
  try {
    return !!(el && el.closest && el.closest(MASK_SELECTOR));
  } catch (e) {
    return false;
  }
}

/** Whether an input's value must be replaced whole, whatever the settings. */
export function isSecretInput(el) {
  if (!el) return false;
  const type = String(el.type || attr(el, "type") || "").toLowerCase();
  if (type === "password" || type === "hidden" || type === "file") return true;
  if (el.hasAttribute && el.hasAttribute("data-rr-is-password")) return true;
  if (SECRET_AUTOCOMPLETE.test(attr(el, "autocomplete"))) return true;
  if (SECRET_NAME.test(attr(el, "name")) || SECRET_NAME.test(attr(el, "id"))) return true;
  return inMaskedArea(el);
}

/**
 * rrweb's maskInputFn. rrweb calls it for every input, textarea and select
 * (the loader passes maskInputOptions naming every type): a constant mask
 * when the site masks inputs or the field is a secret, else the free-text masks.
 */
export function maskInputValue(text, el, settings) {
  if (!text) return text;
  const type = String((el && el.type) || "").toLowerCase();
  if (LABEL_TYPES[type] === 1 && !inMaskedArea(el)) return text;
  if ((settings && settings.maskInputs) || isSecretInput(el)) return INPUT_MASK;
  return maskText(text, textOptions(settings));
}

/**
 * rrweb's maskTextFn (the loader's maskTextSelector is `*`, so every text node
 * comes here): masked areas and, with maskInputs, editable content are
 * blanked; other text gets the free-text masks.
 */
export function maskTextNode(text, el, settings) {
  if (!text) return text;
  if (inMaskedArea(el)) return blankText(text);
  if (settings && settings.maskInputs && el && el.isContentEditable === true) return blankText(text);
  return maskText(text, textOptions(settings));
}

export function textOptions(settings) {
  return { emails: !!(settings && settings.maskEmails), numbers: !!(settings && settings.maskNumbers) };
}
