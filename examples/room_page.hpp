// The page fleet-room-server serves at "/": join a room, see who is there
// and on which instance, chat. Plain HTML and JavaScript, no build step.
#ifndef FLEET_EXAMPLES_ROOM_PAGE_HPP_
#define FLEET_EXAMPLES_ROOM_PAGE_HPP_

inline constexpr const char* kRoomPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fleet rooms</title>
<style>
  body { font-family: sans-serif; margin: 2em; max-width: 48em; }
  #log { border: 1px solid #ccc; height: 18em; overflow-y: auto; padding: .5em; }
  .sys { color: #777; }
  #participants li span { color: #777; }
</style>
</head>
<body>
<h1>fleet rooms</h1>
<p>Instance <b id="instance">?</b>. <span id="status">not joined</span></p>
<form id="join-form">
  <input id="room" placeholder="room" value="lobby">
  <input id="name" placeholder="your name">
  <button id="join" type="submit">Join</button>
</form>
<h2>In the room</h2>
<ul id="participants"></ul>
<div id="log"></div>
<form id="chat-form">
  <input id="text" placeholder="message" size="40" autocomplete="off">
  <button id="send" type="submit">Send</button>
</form>
<script>
"use strict";
let ws = null, room = "", name = "";
const $ = (id) => document.getElementById(id);
const people = new Map();

function line(text, cls) {
  const div = document.createElement("div");
  if (cls) div.className = cls;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
}
function showPeople() {
  const ul = $("participants");
  ul.textContent = "";
  for (const [id, inst] of [...people.entries()].sort()) {
    const li = document.createElement("li");
    li.textContent = id + " ";
    const span = document.createElement("span");
    span.textContent = "@ " + inst;
    li.appendChild(span);
    ul.appendChild(li);
  }
}
function handle(m) {
  if (m.type === "hello") {
    $("instance").textContent = m.instance;
  } else if (m.type === "joined") {
    people.clear();
    for (const p of m.participants) people.set(p.identity, p.instance);
    showPeople();
    $("status").textContent = "joined " + m.room + " (hosted on " + m.node + ", connected to " +
        m.instance + ")";
  } else if (m.type === "redirect") {
    line("room is hosted on " + m.node + ": reconnecting to " + m.address, "sys");
    connect("ws://" + m.address + "/ws");
  } else if (m.type === "participant") {
    if (m.event === "left") people.delete(m.identity);
    else people.set(m.identity, m.instance);
    showPeople();
    line(m.identity + " " + m.event + " (via " + m.instance + ")", "sys");
  } else if (m.type === "chat") {
    line(m.from + " (via " + m.instance + "): " + m.text);
  } else if (m.type === "moved") {
    line("room moved to " + m.node + " (" + m.cause + ")", "sys");
  } else if (m.type === "gap") {
    line("some messages may have been missed: " + m.reason, "sys");
  } else if (m.type === "error") {
    line("error: " + m.message, "sys");
  }
}
function connect(url) {
  if (ws) { ws.onclose = null; ws.close(); }
  ws = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({type: "join", room, identity: name}));
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    for (const one of Array.isArray(m) ? m : [m]) handle(one);
  };
  ws.onclose = () => { $("status").textContent = "disconnected"; };
}
$("join-form").onsubmit = (ev) => {
  ev.preventDefault();
  room = $("room").value.trim();
  name = $("name").value.trim();
  if (!room || !name) return;
  connect((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
};
$("chat-form").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!ws || !text) return;
  ws.send(JSON.stringify({type: "chat", text}));
  $("text").value = "";
};
fetch("/info").then((r) => r.json()).then((i) => { $("instance").textContent = i.instance; });
</script>
</body>
</html>
)HTML";

#endif  // FLEET_EXAMPLES_ROOM_PAGE_HPP_
