/* Recording gateway: placeholder recorder.
 * The real recorder (rrweb record wrapped by the gateway's loader) is built by
 * `make setup` once it exists; until then this file only announces itself so
 * that a page can see the tag was injected and loaded. */
(function () {
  "use strict";
  var tag = document.currentScript;
  window.__recGateway = {
    placeholder: true,
    site: tag ? tag.getAttribute("data-rec-site") : null
  };
})();
