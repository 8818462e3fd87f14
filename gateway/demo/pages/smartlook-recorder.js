// Local stand-in for another vendor's session recorder. It does nothing except
// exist: the gateway sees this script tag on /partner and skips its own injection.
window.smartlook = { stub: true };
