// The page's script: a file of its own, since the Content-Security-Policy zServer
// sends with pages allows no inline script.
import { bridgeUrl, connect } from "/zbifrost.js";
const status = document.getElementById("status");
try {
  const bridge = await connect(await bridgeUrl());
  status.textContent = "Connected.";
  document.getElementById("version").textContent = bridge.info.server_version;
  document.getElementById("features").textContent = bridge.info.features.join(", ");
  document.getElementById("user").textContent =
    `${bridge.info.auth.user} (${bridge.info.auth.role})`;
  bridge.on("close", (e) => { status.textContent = `Disconnected (${e.code}).`; });
  bridge.on("reconnect", () => { status.textContent = "Connected again."; });
} catch (error) {
  status.textContent = error.message;
  status.className = "error";
}
