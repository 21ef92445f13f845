// The page's script: a file of its own, since the Content-Security-Policy zServer
// sends with pages allows no inline script.
import { bridgeUrl, connect } from "/zbifrost.js";
const status = document.getElementById("status");
const output = document.getElementById("output");

function show(text, kind = "") {
  const line = document.createElement("div");
  line.textContent = text;
  line.className = kind;
  output.append(line);
}

function showResult(result) {
  if (result === null || result === undefined) return;
  if (typeof result === "object" && "message" in result && Object.keys(result).length === 1) {
    show(result.message);
  } else {
    show(typeof result === "string" ? result : JSON.stringify(result));
  }
}

try {
  const bridge = await connect(await bridgeUrl());
  status.textContent = `Connected to zCLI ${bridge.info.server_version}.`;
  bridge.on("display", (msg) => {
    const data = msg.data;
    const text = data.content ?? data.label ?? JSON.stringify(data);
    show(text, msg.display_event);
  });
  const reply = await bridge.menu();
  for (const option of reply.result.menu.options) {
    if (option.key === "stop" || option.key === "zBack") continue;
    const button = document.createElement("button");
    button.textContent = option.label;
    button.addEventListener("click", async () => {
      const answer = await bridge.dispatch(option.key);
      if ("error" in answer) show(answer.error, "error"); else showResult(answer.result);
    });
    document.getElementById("menu").append(button);
  }
} catch (error) {
  status.textContent = error.message;
  status.className = "error";
}
