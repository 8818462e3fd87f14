// Paging through a newest-first list with opaque "next" cursors: the API only
// goes older, so the cursors of the pages already seen are kept to go back.
export class CursorStack {
  constructor() {
    this.reset();
  }

  reset() {
    this.previous = []; // cursors of the newer pages, nearest last
    this.current = null; // cursor of the page shown (null: the newest)
    this.next = null; // cursor of the older page, from the last answer
  }

  setNext(next) {
    this.next = typeof next === "string" && next !== "" ? next : null;
  }

  get hasOlder() {
    return this.next !== null;
  }

  get hasNewer() {
    return this.previous.length > 0;
  }

  get page() {
    return this.previous.length + 1;
  }

  older() {
    if (this.next === null) return false;
    this.previous.push(this.current);
    this.current = this.next;
    this.next = null;
    return true;
  }

  newer() {
    if (this.previous.length === 0) return false;
    this.current = this.previous.pop();
    this.next = null;
    return true;
  }
}
