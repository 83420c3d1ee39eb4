// dedup review: every element is built with textContent (record values never become markup).
"use strict";

const tab = Math.random().toString(36).slice(2);
const given = []; // this tab's answers, newest last, for undo
let current = null;
let retrainRunning = false;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Dedup": "1" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text) { document.getElementById("message").textContent = text; }

function valueCell(parts) {
  const td = el("td", null, "value");
  if (!parts.length) { td.appendChild(el("span", "(empty)", "null")); return td; }
  for (const [text, same] of parts) td.appendChild(el("span", text, same ? "" : "diff"));
  return td;
}

function showPair(pair) {
  current = pair;
  const body = document.querySelector("#pair tbody");
  body.replaceChildren();
  const head = document.getElementById("pair-head");
  head.replaceChildren();
  if (!pair) {
    head.textContent = "Nothing left to ask about: retrain, or search a record.";
    document.getElementById("left-id").textContent = "left";
    document.getElementById("right-id").textContent = "right";
    return;
  }
  document.getElementById("left-id").textContent = pair.left;
  document.getElementById("right-id").textContent = pair.right;
  const p = pair.probability === null ? "not scored" : `probability ${(pair.probability * 100).toFixed(1)}%`;
  head.appendChild(el("strong", p));
  head.appendChild(el("span", pair.blocking_pass ? `  ·  found by ${pair.blocking_pass}` : "  ·  not a candidate pair"));
  if (pair.answer) head.appendChild(el("span", `  ·  answered: ${pair.answer}`));
  for (const f of pair.fields) {
    const tr = el("tr");
    tr.appendChild(el("th", f.field));
    tr.appendChild(valueCell(f.left));
    tr.appendChild(valueCell(f.right));
    tr.appendChild(el("td", f.similarity === null ? "–" : f.similarity.toFixed(2)));
    const bits = el("td", f.bits === null ? "–" : (f.bits > 0 ? "+" : "") + f.bits.toFixed(1));
    if (f.bits !== null) bits.className = f.bits > 0 ? "plus" : "minus";
    tr.appendChild(bits);
    body.appendChild(tr);
  }
  showCluster(pair.clusters[0]);
}

function showProgress(progress) {
  const box = document.getElementById("progress");
  const c = progress.counts;
  const gain = progress.estimated_f1_gain;
  let text = `${progress.answers} pairs answered (${c.match} match, ${c["non-match"]} non-match, ${c.unsure} unsure)`;
  text += ` · estimated pair-F1 gain ${gain >= 0 ? "+" : ""}${gain.toFixed(3)}`;
  const r = progress.retrain;
  if (r.state === "running") text += ` · retraining with ${r.labels_used} answers (${r.seconds}s): ${r.last_line}`;
  else if (r.state === "finished") text += ` · retrained with ${r.labels_used} answers in ${r.seconds}s`;
  else if (r.state === "failed") text += ` · retrain failed: ${r.last_line}`;
  box.textContent = text;
  const wasRunning = retrainRunning;
  retrainRunning = r.state === "running";
  if (retrainRunning) setTimeout(refreshProgress, 1000);
  if (wasRunning && r.state === "finished") loadNext(); // the queue moved on to the new run
}

async function refreshProgress() {
  try { showProgress(await api("/api/progress")); } catch (e) { say(e.message); }
}

async function loadNext() {
  try {
    const data = await api(`/api/next?tab=${encodeURIComponent(tab)}`);
    showPair(data.pair);
    showProgress(data.progress);
  } catch (e) { say(e.message); }
}

async function answer(label) {
  if (!current) return;
  const pair = current;
  try {
    const data = await api("/api/label", { left: pair.left, right: pair.right, label, tab });
    given.push([pair.left, pair.right]);
    say(`${pair.left} / ${pair.right}: ${label} (saved, ${data.given} answers in labels.parquet)`);
    showPair(data.pair);
    showProgress(data.progress);
  } catch (e) { say(e.message); }
}

async function undo() {
  const last = given.pop();
  if (!last) { say("nothing to undo in this tab"); return; }
  try {
    const data = await api("/api/undo", { left: last[0], right: last[1], tab });
    say(data.undone ? `undid the answer about ${last[0]} / ${last[1]}` : "that answer was already gone");
    const pair = await api(`/api/pair?left=${encodeURIComponent(last[0])}&right=${encodeURIComponent(last[1])}`);
    showPair(pair.pair);
    showProgress(data.progress);
  } catch (e) { say(e.message); }
}

async function retrain() {
  try {
    const status = await api("/api/retrain", {});
    say(`retraining with ${status.labels_used} answers…`);
    refreshProgress();
  } catch (e) { say(e.message); }
}

function recordLink(id) {
  const b = el("button", id, "link");
  b.addEventListener("click", () => showRecord(id));
  return b;
}

async function showCluster(id) {
  const box = document.getElementById("cluster");
  document.getElementById("cluster-name").textContent = id;
  box.replaceChildren();
  try {
    const c = await api(`/api/cluster?id=${encodeURIComponent(id)}`);
    box.appendChild(el("div", `${c.size} member(s)`));
    const members = el("ul");
    for (const m of c.members) {
      const li = el("li");
      li.appendChild(recordLink(m.id));
      li.appendChild(el("span", " " + Object.values(m.values).filter((v) => v !== null).join(" · ")));
      members.appendChild(li);
    }
    box.appendChild(members);
    if (c.links.length) {
      box.appendChild(el("div", "weakest links inside:"));
      const links = el("ul");
      for (const link of c.links.slice(0, 10)) {
        const li = el("li");
        const open = el("button", `${link.left} – ${link.right}`, "link");
        open.addEventListener("click", async () => showPair((await api(`/api/pair?left=${encodeURIComponent(link.left)}&right=${encodeURIComponent(link.right)}`)).pair));
        li.appendChild(open);
        li.appendChild(el("span", ` ${link.probability === null ? "" : (link.probability * 100).toFixed(1) + "%"} `));
        const split = el("button", "split here", "link split");
        split.addEventListener("click", async () => {
          try {
            const r = await api("/api/split", { left: link.left, right: link.right, tab });
            say(r.separated ? `split: ${r.answered.length} pair(s) across the cut answered non-match` : "still joined through stronger links; this pair answered non-match");
            refreshProgress();
            showCluster(id);
          } catch (e) { say(e.message); }
        });
        li.appendChild(split);
        links.appendChild(li);
      }
      box.appendChild(links);
    }
  } catch (e) { box.textContent = e.message; }
}

async function showRecord(id) {
  const box = document.getElementById("record");
  box.replaceChildren();
  try {
    const r = await api(`/api/record?id=${encodeURIComponent(id)}`);
    box.appendChild(el("div", `${r.id} in cluster ${r.cluster_id}`));
    const values = el("ul");
    for (const [field, value] of Object.entries(r.values)) values.appendChild(el("li", `${field}: ${value === null ? "(empty)" : value}`));
    box.appendChild(values);
    const pairs = el("ul");
    for (const p of r.pairs) {
      const li = el("li");
      const open = el("button", `with ${p.other}`, "link");
      open.addEventListener("click", async () => showPair((await api(`/api/pair?left=${encodeURIComponent(r.id)}&right=${encodeURIComponent(p.other)}`)).pair));
      li.appendChild(open);
      li.appendChild(el("span", ` ${p.probability === null ? "" : (p.probability * 100).toFixed(1) + "%"}`));
      pairs.appendChild(li);
    }
    box.appendChild(pairs);
    showCluster(r.cluster_id);
  } catch (e) { box.textContent = e.message; }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("match").addEventListener("click", () => answer("match"));
  document.getElementById("non-match").addEventListener("click", () => answer("non-match"));
  document.getElementById("unsure").addEventListener("click", () => answer("unsure"));
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("retrain").addEventListener("click", retrain);
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("search-id").value.trim();
    if (id) showRecord(id);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const action = { m: () => answer("match"), n: () => answer("non-match"), u: () => answer("unsure"), z: undo, r: retrain }[event.key];
    if (action) { event.preventDefault(); action(); }
  });
  loadNext();
});
