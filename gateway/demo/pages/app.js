// Demo Shop account app: switches views with history.pushState, without reloading.
"use strict";

const VIEWS = {
  "/app/": { title: "Dashboard", render: renderDashboard },
  "/app/settings": { title: "Settings", render: renderSettings },
  "/app/profile": { title: "Profile", render: renderProfile },
};

const view = document.getElementById("app-view");

function show(path) {
  const entry = VIEWS[path];
  if (entry) {
    entry.render();
    document.title = `${entry.title} · Demo Shop`;
  } else {
    view.innerHTML = `
      <h2>No such view</h2>
      <p><a href="/app/" data-app-link>Back to the dashboard</a></p>`;
    document.title = "Not found · Demo Shop";
  }
  for (const link of document.querySelectorAll(".app-tabs a")) {
    if (link.getAttribute("href") === path) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

function formatPrice(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

function renderDashboard() {
  view.innerHTML = `
    <h2>Dashboard</h2>
    <p>Welcome back, Sam. Your last order, DS-1041, was delivered on Monday.</p>
    <h3>Recommended for you</h3>
    <ul class="cards"></ul>`;
  const list = view.querySelector(".cards");
  fetch("/api/products")
    .then((response) => response.json())
    .then((products) => {
      for (const product of products) {
        const card = document.createElement("li");
        card.className = "card";
        const name = document.createElement("h3");
        name.textContent = product.name;
        const price = document.createElement("span");
        price.className = "price";
        price.textContent = formatPrice(product.price_cents);
        card.append(name, price);
        list.append(card);
      }
    })
    .catch(() => {
      list.textContent = "Recommendations are not available right now.";
    });
}

function renderSettings() {
  view.innerHTML = `
    <h2>Settings</h2>
    <form id="settings-form">
      <label>Display name <input name="display_name" value="Sam Shopper"></label>
      <label>Time zone
        <select name="timezone">
          <option>UTC</option>
          <option>Europe/Berlin</option>
          <option>America/New_York</option>
        </select>
      </label>
      <label class="check"><input type="checkbox" name="order_emails" checked> Email me about my orders</label>
      <button type="submit">Save settings</button>
      <p role="status"></p>
    </form>`;
  const form = view.querySelector("#settings-form");
  form.addEventListener("submit", (event) => {
    // The demo has no account backend: confirm in place instead of posting.
    event.preventDefault();
    form.querySelector("[role=status]").textContent = "Settings saved.";
  });
}

function renderProfile() {
  view.innerHTML = `
    <h2>Profile</h2>
    <dl>
      <dt>Name</dt><dd>Sam Shopper</dd>
      <dt>Email</dt><dd>sam.shopper@example.com</dd>
      <dt>Phone</dt><dd>+1 555 010 2030</dd>
      <dt>Member since</dt><dd>March 2023</dd>
    </dl>
    <p><a href="/app/settings" data-app-link>Change your settings</a></p>`;
}

// Links marked data-app-link switch views in place; modified clicks
// (new tab, new window) keep the browser's default behaviour.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-app-link]");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  event.preventDefault();
  if (link.pathname !== location.pathname) {
    history.pushState(null, "", link.pathname);
    show(link.pathname);
  }
});

window.addEventListener("popstate", () => show(location.pathname));

show(location.pathname);
