// zChat's web client (docs/chat.md): an ES module with no build step, served by zServer
// beside /zbifrost.js. Message text only ever reaches the page through textContent.
//
// Signing in: "Sign in" posts to /api/login and connects with the token it returns;
// "Create account" sends chat.register on a connection that has not signed in yet, then
// auth with the token it answers. Reconnects (zbifrost.js) sign in with that token.

import { ZBifrost, bridgeUrl } from "/zbifrost.js";

const KEEPALIVE_MS = 10000; // a third of the server's default keep-alive (30 s)
const $ = (id) => document.getElementById(id);

let bridge = null; // the signed-in connection, or null
let me = null; // the signed-in user's name
let current = null; // the open conversation: {kind: "user" | "room", name}
let keepalive = null;
const logs = new Map(); // "user:bob" or "room:general" -> its <ol>
const unread = new Map(); // the same keys -> messages not seen yet
const early = new Map(); // message id -> a chat.status that came before the send's reply

// --- small helpers -----------------------------------------------------------------------

function element(tag, testid, text = "") {
  const node = document.createElement(tag);
  if (testid) node.dataset.testid = testid;
  node.textContent = text;
  return node;
}

function showError(text) {
  $("error").textContent = text;
}

function clock(ts, withDate) {
  const at = new Date(ts * 1000);
  const two = (n) => String(n).padStart(2, "0");
  const time = `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
  if (!withDate) return time;
  return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())} ${time}`;
}

// The result of a chat event, or null after showing why there is none.
async function request(event, data = {}) {
  let reply;
  try {
    reply = await bridge.send({ event, data });
  } catch (error) {
    showError(error.message);
    return null;
  }
  if ("error" in reply) {
    showError(reply.error);
    return null;
  }
  return reply.result;
}

// --- conversations -----------------------------------------------------------------------

function conversation(kind, name) {
  const key = `${kind}:${name}`;
  if (!logs.has(key)) {
    const log = element("ol", "log");
    Object.assign(log.dataset, { kind, name });
    log.hidden = current === null || `${current.kind}:${current.name}` !== key;
    $("logs").append(log);
    logs.set(key, log);
  }
  return logs.get(key);
}

// Adds a message to a log in id order (once per id); returns its <li>, or null.
function addMessage(log, { id, from, text, ts, offline = false, status = null }) {
  if (log.querySelector(`:scope > [data-id="${id}"]`)) return null;
  const mine = from === me;
  const item = element("li", "message");
  Object.assign(item.dataset, { id, ts, from });
  item.classList.toggle("mine", mine);
  item.classList.toggle("offline", offline);
  item.append(
    element("time", "message-time", clock(ts, offline)),
    element("span", "message-from", from),
    element("span", "message-text", text),
  );
  if (offline) item.append(element("span", "message-offline", "offline"));
  if (status !== null) item.append(element("span", "message-status", status));
  const later = [...log.children].find((other) => Number(other.dataset.id) > id);
  log.insertBefore(item, later ?? null);
  if (!mine && log.hidden) {
    const key = `${log.dataset.kind}:${log.dataset.name}`;
    unread.set(key, (unread.get(key) ?? 0) + 1);
    showUnread(log.dataset.kind, log.dataset.name);
  }
  return item;
}

function listItem(kind, name) {
  const list = $(kind === "user" ? "contacts" : "rooms");
  return list.querySelector(`[data-name="${CSS.escape(name)}"]`);
}

function showUnread(kind, name) {
  const badge = listItem(kind, name)?.querySelector("[data-testid=unread]");
  if (badge) {
    const count = unread.get(`${kind}:${name}`) ?? 0;
    badge.textContent = count ? String(count) : "";
  }
}

function entry(kind, name, label) {
  const item = element("li", kind === "user" ? "contact" : "room");
  item.dataset.name = name;
  item.classList.toggle("selected", current?.kind === kind && current?.name === name);
  const button = element("button", "open", label);
  button.addEventListener("click", () => open(kind, name));
  item.append(button, element("span", "unread"));
  return item;
}

function showContacts(table) {
  const items = table.filter((row) => row.user !== me).map(({ user, online }) => {
    const item = entry("user", user, user);
    item.dataset.online = online;
    item.insertBefore(element("span", "presence", online ? "online" : "offline"), item.lastChild);
    return item;
  });
  $("contacts").replaceChildren(...items);
  for (const row of table) showUnread("user", row.user);
}

async function refreshRooms() {
  const result = await request("chat.rooms");
  if (result === null) return;
  $("rooms").replaceChildren(...result.rooms.map((room) => entry("room", room, `#${room}`)));
  for (const room of result.rooms) showUnread("room", room);
}

async function open(kind, name) {
  showError("");
  current = { kind, name };
  for (const log of logs.values()) log.hidden = true;
  conversation(kind, name).hidden = false;
  for (const item of document.querySelectorAll("nav li")) {
    const kindOf = item.dataset.testid === "contact" ? "user" : "room";
    item.classList.toggle("selected", kindOf === kind && item.dataset.name === name);
  }
  unread.delete(`${kind}:${name}`);
  showUnread(kind, name);
  $("title").textContent = kind === "room" ? `#${name}` : name;
  $("room-leave").hidden = kind !== "room";
  $("composer").hidden = false;
  $("text").focus();
  if (kind === "room") {
    const result = await request("chat.room.history", { room: name });
    for (const message of result?.messages ?? []) addMessage(conversation("room", name), message);
  }
}

function closeConversation() {
  current = null;
  for (const log of logs.values()) log.hidden = true;
  $("title").textContent = "Pick a contact or a room.";
  $("room-leave").hidden = true;
  $("composer").hidden = true;
}

// --- the connection ----------------------------------------------------------------------

function listen(client) {
  client.on("connection_info", ({ data }) => {
    me = data.auth.user;
  });
  client.on("chat.clients", ({ data }) => showContacts(data.table));
  client.on("chat.offline", ({ data }) => {
    const s = data.count === 1 ? "" : "s";
    $("notice").textContent = `You have ${data.count} offline message${s}.`;
  });
  client.on("chat.message", ({ data }) => {
    // acknowledged at once, so the sender hears "delivered" (or a stored one is deleted)
    const ack = client.send({ event: "chat.ack", data: { id: data.id } });
    const item = addMessage(conversation("user", data.from), data);
    ack.then((reply) => {
      if (item && "result" in reply) item.dataset.acked = reply.result.acked;
    }, () => {});
  });
  client.on("chat.status", ({ data }) => {
    const status = document.querySelector(
      `[data-kind=user] > .mine[data-id="${data.id}"] [data-testid=message-status]`,
    );
    if (status) status.textContent = data.status;
    else early.set(data.id, data.status);
    if (data.error) showError(data.error);
  });
  client.on("chat.room.message", ({ data }) => addMessage(conversation("room", data.room), data));
  client.on("close", ({ code, reason }) => {
    if (client !== bridge) return; // a sign-in that failed says why itself
    if (code === 1008 || client.closedByUser) signedOut(reason || "Signed out.");
    else $("status").textContent = `Connection lost (${code}); reconnecting…`;
  });
  client.on("reconnect", () => {
    $("status").textContent = `Signed in as ${me}.`;
    refresh();
  });
  return client;
}

async function login(url, username, password) {
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error);
  return listen(new ZBifrost(url, { token: body.token })).connect();
}

async function register(url, username, password) {
  const client = listen(new ZBifrost(url));
  const ready = client.connect(); // resolves on connection_info, after auth
  ready.catch(() => {}); // a refusal is reported through the awaits below
  await Promise.race([new Promise((resolve) => client.ws.addEventListener("open", resolve)),
                      ready]);
  const reply = await client.send({ event: "chat.register", data: { username, password } });
  if ("error" in reply) {
    client.close();
    throw new Error(reply.error);
  }
  client.token = reply.result.token; // reconnects sign in with it
  client.ws.send(JSON.stringify({ event: "auth", token: client.token }));
  return ready;
}

async function refresh() {
  const result = await request("chat.users");
  if (result !== null) showContacts(result.users);
  await refreshRooms();
}

async function signedIn(client) {
  bridge = client;
  $("status").textContent = `Signed in as ${me}.`;
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("chat").hidden = false;
  keepalive = setInterval(() => {
    if (bridge.ws.readyState === WebSocket.OPEN) request("chat.keepalive");
  }, KEEPALIVE_MS);
  await refresh();
}

function signedOut(why) {
  clearInterval(keepalive);
  bridge = me = null;
  closeConversation();
  logs.clear();
  unread.clear();
  early.clear();
  for (const id of ["logs", "contacts", "rooms"]) $(id).replaceChildren();
  $("notice").textContent = "";
  $("status").textContent = why;
  $("chat").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
}

// --- what the user does ------------------------------------------------------------------

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const how = event.submitter?.value === "register" ? register : login;
  try {
    await signedIn(await how(await bridgeUrl(), $("username").value, $("password").value));
    $("password").value = "";
  } catch (error) {
    showError(error.message);
  }
});

$("sign-out").addEventListener("click", () => {
  showError("");
  request("logout"); // the server answers, then closes 1008 "Signed out."
});

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const { kind, name } = current;
  const text = $("text").value;
  const result = kind === "user"
    ? await request("chat.send", { to: name, text })
    : await request("chat.room.send", { room: name, text });
  if (result === null) return;
  $("text").value = "";
  const status = kind === "user" ? (early.get(result.id) ?? "sent") : null;
  early.delete(result.id);
  addMessage(conversation(kind, name), { id: result.id, from: me, text, ts: result.ts, status });
});

$("room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const room = $("room-name").value;
  const verb = event.submitter?.value === "join" ? "join" : "create";
  if ((await request(`chat.room.${verb}`, { room })) === null) return;
  $("room-name").value = "";
  await refreshRooms();
  await open("room", room);
});

$("room-leave").addEventListener("click", async () => {
  showError("");
  const { name } = current;
  if ((await request("chat.room.leave", { room: name })) === null) return;
  logs.get(`room:${name}`).remove();
  logs.delete(`room:${name}`);
  unread.delete(`room:${name}`);
  closeConversation();
  await refreshRooms();
});
