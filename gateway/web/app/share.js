// The admin player's share panel: create a link, copy it, list and revoke
// links, download the recording.
import { $, clear, h, timeEl } from "./dom.js";
import { formatDateTime } from "./format.js";
import { revokePath } from "./route.js";

// "active", "revoked" or "expired", for one share of the API's list.
export function shareStatus(share, now = Date.now()) {
  if (share.revoked) return "revoked";
  const expires = Date.parse(share.expires_at);
  return Number.isFinite(expires) && expires <= now ? "expired" : "active";
}

export function initShare({ api, route, onSignedOut }) {
  const ui = {
    panel: $("#share-panel"),
    days: $("#share-days"),
    create: $("#share"),
    error: $("#share-error"),
    result: $("#share-result"),
    url: $("#share-url"),
    copy: $("#share-copy"),
    expiry: $("#share-expiry"),
    list: $("#shares"),
    empty: $("#shares-empty"),
    download: $("#download"),
  };
  ui.panel.hidden = false;
  ui.download.href = route.exportUrl;
  ui.download.setAttribute("download", `recording-${route.id}.jsonl`);

  const absolute = (url) => new URL(url, location.origin).href;

  function failed(err, what) {
    if (err.status === 401) return onSignedOut();
    ui.error.textContent = `${what}: ${err.message}`;
  }

  async function copy(text, button) {
    let done = false;
    try {
      await navigator.clipboard.writeText(text);
      done = true;
    } catch {
      // No clipboard API (plain http) or no permission: select it instead.
      ui.url.value = text;
      ui.result.hidden = false;
      ui.url.select();
      done = document.execCommand && document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = done ? "Copied" : "Press Ctrl+C to copy";
    setTimeout(() => (button.textContent = label), 2000);
  }

  async function load() {
    let data;
    try {
      data = await api.get(route.shares);
    } catch (err) {
      return failed(err, "Could not list the share links");
    }
    render(Array.isArray(data && data.shares) ? data.shares : []);
  }

  function render(shares) {
    clear(ui.list);
    ui.empty.hidden = shares.length > 0;
    const sorted = shares.slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    for (const share of sorted) {
      const status = shareStatus(share);
      const actions = [];
      if (status === "active") {
        const copyButton = h("button", { type: "button", class: "button-quiet", text: "Copy link" });
        copyButton.addEventListener("click", () => copy(absolute(share.url), copyButton));
        actions.push(
          copyButton,
          h("button", {
            type: "button",
            "data-testid": "revoke",
            "aria-label": `Revoke the link created ${formatDateTime(share.created_at)}`,
            onclick: () => revoke(share),
            text: "Revoke",
          }),
        );
      }
      ui.list.append(
        h(
          "li",
          { class: `share-item share-${status}`, "data-share-id": share.id },
          h(
            "p",
            null,
            h("span", { class: `badge badge-${status}`, text: status }),
            " Created ",
            timeEl(share.created_at, formatDateTime(share.created_at)),
            status === "revoked" ? "" : [status === "expired" ? ", expired " : ", expires ", timeEl(share.expires_at, formatDateTime(share.expires_at))],
          ),
          actions.length ? h("div", { class: "share-actions" }, actions) : null,
        ),
      );
    }
  }

  async function create() {
    ui.create.disabled = true;
    ui.error.textContent = "";
    try {
      const share = await api.post(route.share, { days: Number(ui.days.value) });
      ui.url.value = absolute(share.url);
      ui.expiry.textContent = `The link expires ${formatDateTime(share.expires_at)}.`;
      ui.result.hidden = false;
      ui.result.dataset.shareId = share.id;
      ui.url.focus();
      ui.url.select();
      await load();
    } catch (err) {
      failed(err, "Could not create a share link");
    } finally {
      ui.create.disabled = false;
    }
  }

  async function revoke(share) {
    ui.error.textContent = "";
    try {
      await api.del(revokePath(share.id));
    } catch (err) {
      return failed(err, "Could not revoke the link");
    }
    if (ui.result.dataset.shareId === String(share.id)) ui.result.hidden = true;
    await load();
    ui.create.focus();
  }

  ui.create.addEventListener("click", create);
  ui.copy.addEventListener("click", () => copy(ui.url.value, ui.copy));
  return load();
}
