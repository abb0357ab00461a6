// The live dashboard: sign in, read GET /api/dashboard/stream with fetch() (the token goes in
// the Authorization header, which EventSource cannot send), show the snapshot, apply each live
// event, and reconnect with backoff, reloading the snapshot, whenever the stream ends.
// Everything is written with textContent: no server text is ever parsed as HTML.
"use strict";

(function () {
  const FIRST_RETRY_MS = 1000;
  const MAX_RETRY_MS = 30000;
  const FEED_MAX = 50;
  const SEEN_MAX = 1000;
  // Escrow and bid events change totals the event alone does not give: reload them, once per
  // burst of events.
  const RELOAD_DELAY_MS = 300;

  const session = { access: null, refresh: null, user: null };
  let controller = null;
  let retryMs = FIRST_RETRY_MS;
  let retryTimer = null;
  let reloadTimer = null;
  let eventsSeen = 0;
  const seen = new Set();
  const workerNames = new Map();

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function money(cents, currency) {
    return (Number(cents) / 100).toFixed(2) + " " + currency;
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  // --- signing in and out ----------------------------------------------------------------

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    const response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok || !body || !body.success) {
      const message = body && body.error ? body.error.message : "sign-in failed";
      $("login-error").textContent = message;
      return;
    }
    session.access = body.data.accessToken;
    session.refresh = body.data.refreshToken;
    session.user = body.data.user;
    $("password").value = "";
    $("login").hidden = true;
    $("panels").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = session.user.name + " (" + session.user.role + ")";
    retryMs = FIRST_RETRY_MS;
    connect();
  }

  function signOut(reason) {
    if (controller) controller.abort();
    clearTimeout(retryTimer);
    session.access = session.refresh = session.user = null;
    $("panels").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("who").textContent = "";
    setStatus("signed-out", reason || "signed out");
  }

  async function refreshTokens() {
    if (!session.refresh) return false;
    const response = await fetch("/api/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refreshToken: session.refresh }),
    }).catch(() => null);
    if (!response || !response.ok) return false;
    const body = await response.json();
    session.access = body.data.accessToken;
    session.refresh = body.data.refreshToken;
    return true;
  }

  // --- the stream ------------------------------------------------------------------------

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    const wait = retryMs / 2 + Math.random() * (retryMs / 2);
    setStatus("reconnecting", "reconnecting in " + Math.ceil(wait / 1000) + " s");
    retryTimer = setTimeout(connect, wait);
    retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
  }

  async function connect() {
    if (!session.access) return;
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    setStatus("connecting", "connecting…");
    let response;
    try {
      response = await fetch("/api/dashboard/stream", {
        headers: { Authorization: "Bearer " + session.access, Accept: "text/event-stream" },
        signal: mine.signal,
        cache: "no-store",
      });
    } catch (error) {
      if (!mine.signal.aborted) scheduleReconnect();
      return;
    }
    if (response.status === 401) {
      if (await refreshTokens()) {
        connect();
      } else {
        signOut("signed out: the session has ended");
      }
      return;
    }
    if (!response.ok || !response.body) {
      scheduleReconnect();
      return;
    }
    let ended = null;
    try {
      ended = await readEvents(response.body, mine);
    } catch (error) {
      ended = null;
    }
    if (mine.signal.aborted) return;
    if (ended === "revoked") {
      signOut("signed out: the session was ended");
    } else if (ended === "expired") {
      if (await refreshTokens()) connect();
      else signOut("signed out: the session has expired");
    } else {
      scheduleReconnect();
    }
  }

  // Reads Server-Sent Events until the stream closes; returns the `end` event's reason, if any.
  async function readEvents(body, mine) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || mine.signal.aborted) return null;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const frame = parseFrame(block);
        if (!frame) continue;
        if (frame.event === "end") return frame.data ? frame.data.reason : "end";
        handle(frame);
      }
    }
  }

  function parseFrame(block) {
    let event = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    try {
      return { event, id, data: JSON.parse(data.join("\n")) };
    } catch (error) {
      return null;
    }
  }

  function handle(frame) {
    if (frame.event === "snapshot") {
      retryMs = FIRST_RETRY_MS;
      setStatus("live", "live");
      render(frame.data);
      return;
    }
    const id = frame.id || frame.data.id;
    if (seen.has(id)) return; // delivered twice (a reconnect, a redelivery): applied once
    seen.add(id);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
    apply(frame.event, frame.data);
    addToFeed(frame.event, frame.data);
  }

  // --- the snapshot ----------------------------------------------------------------------

  function render(snapshot) {
    renderNotifications(snapshot.notifications);
    $("worker-panel").hidden = !snapshot.worker;
    $("client-panel").hidden = !snapshot.client;
    $("admin-panel").hidden = !snapshot.admin;
    const panels = snapshot.worker || snapshot.client || snapshot.admin;
    if (snapshot.worker) renderWorker(snapshot.worker);
    if (snapshot.client) renderClient(snapshot.client);
    if (snapshot.admin) renderAdmin(snapshot.admin);
    renderBookings(panels ? panels.bookings : []);
  }

  async function reloadSnapshot() {
    if (!session.access) return;
    const response = await fetch("/api/dashboard/snapshot", {
      headers: { Authorization: "Bearer " + session.access },
      cache: "no-store",
    }).catch(() => null);
    if (!response || !response.ok) return;
    const body = await response.json();
    render(body.data);
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(reloadSnapshot, RELOAD_DELAY_MS);
  }

  function renderNotifications(panel) {
    $("unread-count").textContent = panel.unreadCount;
    $("notifications").replaceChildren(...panel.latest.map(notificationItem));
  }

  function notificationItem(n) {
    return el("li", { "data-notification-id": n.id }, el("strong", {}, n.title), " ", n.body);
  }

  function setRating(average, count) {
    $("rating-average").textContent = average === null || average === undefined
      ? "–" : Number(average).toFixed(2);
    $("rating-count").textContent = count;
  }

  function renderWorker(worker) {
    setRating(worker.rating.average, worker.rating.count);
    $("earnings-rows").replaceChildren(...worker.earnings.currencies.map((c) =>
      el("tr", { "data-currency": c.currency },
        el("td", {}, c.currency),
        el("td", { "data-value": "paid-out-cents", "data-cents": c.paidOutCents },
          money(c.paidOutCents, c.currency)),
        el("td", { "data-value": "pending-transfer-cents", "data-cents": c.pendingTransferCents },
          money(c.pendingTransferCents, c.currency)),
        el("td", { "data-value": "held-cents", "data-cents": c.heldCents },
          money(c.heldCents, c.currency)))));
    $("bids").replaceChildren(...worker.bids.map((b) =>
      el("li", { "data-bid-id": b.bid.id },
        b.projectTitle, " — ", money(b.bid.amountCents, b.bid.currency), " — ",
        el("span", { "data-value": "bid-status" }, b.bid.status))));
  }

  function matchRows(items) {
    return items.map((m) => {
      const name = workerNames.get(m.workerId) || m.workerId.slice(0, 8);
      return el("li", { "data-worker-id": m.workerId, "data-rank": m.rank },
        "#" + m.rank + " ", name, " ",
        el("span", { "data-value": "score" }, Number(m.score).toFixed(3)));
    });
  }

  function renderClient(client) {
    $("projects").replaceChildren(...client.projects.map((p) => {
      for (const m of p.matches.items) workerNames.set(m.worker.id, m.worker.name);
      const items = p.matches.items.map((m) => ({ workerId: m.worker.id, rank: m.rank, score: m.score }));
      return el("div", { class: "project", "data-project-id": p.projectId },
        el("h3", {}, p.title),
        el("p", {}, el("span", { "data-value": "ranked" }, p.matches.ranked), " workers ranked"),
        el("ol", { class: "matches" }, ...matchRows(items)));
    }));
    $("billing-rows").replaceChildren(...client.billing.currencies.map((c) =>
      el("tr", { "data-currency": c.currency },
        el("td", {}, c.currency),
        el("td", { "data-value": "paid-cents" }, money(c.paidCents, c.currency)),
        el("td", { "data-value": "in-escrow-cents" }, money(c.inEscrowCents, c.currency)),
        el("td", { "data-value": "released-cents" }, money(c.releasedCents, c.currency)),
        el("td", { "data-value": "refunded-cents" }, money(c.refundedCents, c.currency)))));
  }

  function renderAdmin(admin) {
    $("escrow-rows").replaceChildren(...admin.escrow.map((t) =>
      el("tr", { "data-currency": t.currency, "data-status": t.status },
        el("td", {}, t.currency), el("td", {}, t.status),
        el("td", { "data-value": "holds" }, t.holds),
        el("td", { "data-value": "amount-cents" }, money(t.amountCents, t.currency)))));
    $("project-statuses").replaceChildren(...Object.entries(admin.projects).map(([status, n]) =>
      el("li", { "data-status": status }, status + ": ", el("span", { "data-value": "count" }, n))));
    $("disputes").replaceChildren(...admin.openDisputes.map((d) =>
      el("li", { "data-dispute-id": d.id }, d.projectTitle || d.projectId)));
  }

  function renderBookings(bookings) {
    $("bookings").replaceChildren(...bookings.map((b) =>
      el("li", { "data-booking-id": b.id, "data-escrow-id": b.escrowId },
        b.projectTitle, " — ", money(b.agreedAmountCents, b.currency), " — escrow ",
        el("span", { "data-value": "escrow-status" }, b.escrowStatus))));
  }

  // --- live events -----------------------------------------------------------------------

  const ESCROW_STATUS = {
    "escrow.funded": "funded", "escrow.released": "released", "escrow.refunded": "refunded",
  };
  const BID_STATUS = {
    "bid.submitted": "pending", "bid.accepted": "accepted", "bid.withdrawn": "withdrawn",
    "bid.expired": "expired",
  };

  function apply(type, message) {
    const data = message.data || {};
    if (type === "rating.updated") {
      if (session.user && data.userId === session.user.id) setRating(data.average, data.count);
    } else if (type === "match.scored") {
      const block = document.querySelector('[data-project-id="' + CSS.escape(data.projectId) + '"]');
      if (block) {
        block.querySelector('[data-value="ranked"]').textContent = data.ranked;
        block.querySelector("ol.matches").replaceChildren(...matchRows(data.top.slice(0, 5)));
      } else {
        scheduleReload();
      }
    } else if (type in ESCROW_STATUS) {
      const item = document.querySelector('[data-escrow-id="' + CSS.escape(data.escrowId) + '"]');
      if (item) item.querySelector('[data-value="escrow-status"]').textContent = ESCROW_STATUS[type];
      scheduleReload();
    } else if (type in BID_STATUS || type === "project.status_changed") {
      const item = document.querySelector('[data-bid-id="' + CSS.escape(data.bidId || "") + '"]');
      if (item && BID_STATUS[type]) item.querySelector('[data-value="bid-status"]').textContent = BID_STATUS[type];
      for (const rejected of data.rejectedBidIds || []) {
        const other = document.querySelector('[data-bid-id="' + CSS.escape(rejected) + '"]');
        if (other) other.querySelector('[data-value="bid-status"]').textContent = "rejected";
      }
      scheduleReload();
    } else if (type === "notification") {
      const list = $("notifications");
      list.prepend(notificationItem(data));
      while (list.children.length > 5) list.lastChild.remove();
      if (!data.read) $("unread-count").textContent = Number($("unread-count").textContent) + 1;
    }
  }

  function addToFeed(type, message) {
    eventsSeen += 1;
    $("events-seen").textContent = eventsSeen;
    const feed = $("feed");
    const when = new Date(message.occurredAt || Date.now()).toLocaleTimeString();
    feed.prepend(el("li", { "data-event-id": message.id, "data-type": type }, when + " ", type));
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      login(event).catch((error) => { $("login-error").textContent = String(error); });
    });
    $("sign-out").addEventListener("click", () => signOut("signed out"));
  });
})();
