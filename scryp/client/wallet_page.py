"""The wallet page's HTML, CSS and JS in one string: no files to ship, nothing fetched from
elsewhere. It polls ``/api/wallet`` every second and posts the pay form to ``/api/pay``."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Scryp wallet</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f3f4f6; color: #111; }
  header { background: #1e293b; color: #fff; padding: 12px 20px; }
  header h1 { margin: 0; font-size: 18px; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px;
         max-width: 1000px; margin: auto; }
  section { background: #fff; border-radius: 8px; padding: 14px 16px;
            box-shadow: 0 1px 2px rgba(0,0,0,.1); }
  h2 { font-size: 14px; text-transform: uppercase; color: #475569; margin: 0 0 8px; }
  .mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
  #balance { font-size: 34px; font-weight: 600; }
  .muted { color: #64748b; font-size: 13px; }
  .ok { color: #15803d; } .bad { color: #b91c1c; }
  form label { display: block; margin: 6px 0 2px; font-size: 13px; }
  form input { width: 100%; box-sizing: border-box; padding: 6px; font: inherit; }
  button { margin-top: 10px; padding: 7px 16px; font: inherit; background: #2563eb; color: #fff;
           border: 0; border-radius: 6px; cursor: pointer; }
  #payments { max-height: 320px; overflow-y: auto; margin: 0; padding: 0; list-style: none; }
  #payments li { display: flex; justify-content: space-between; gap: 8px;
                 border-bottom: 1px solid #e5e7eb; padding: 5px 0; font-size: 13px; }
  .in { color: #15803d; } .out { color: #b91c1c; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e5e7eb; }
  .wide { grid-column: 1 / -1; }
</style>
</head>
<body>
<header><h1>Scryp wallet</h1>
  <div class="mono" id="account">…</div></header>
<main>
  <section>
    <h2>Balance</h2>
    <div id="balance">…</div>
    <div class="muted" id="verified">waiting for a certified round…</div>
    <div class="muted" id="sync"></div>
    <div class="bad" id="error"></div>
  </section>
  <section>
    <h2>Pay</h2>
    <form id="pay">
      <label for="payee">Payee account (64 hex digits)</label>
      <input id="payee" name="payee" autocomplete="off" spellcheck="false">
      <label for="amount">Amount (scryp)</label>
      <input id="amount" name="amount" type="number" min="1" step="1">
      <button id="send" type="submit">Send</button>
      <div id="pay-result" class="muted"></div>
    </form>
  </section>
  <section>
    <h2>Payments</h2>
    <div class="muted" id="since"></div>
    <ul id="payments"><li class="muted">none synced yet</li></ul>
  </section>
  <section>
    <h2>Network</h2>
    <div class="muted" id="agree"></div>
    <table><thead><tr><th>server</th><th>role</th><th>round</th><th>certified</th></tr></thead>
      <tbody id="servers"></tbody></table>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function short(hex) { return hex.slice(0, 8) + "…" + hex.slice(-6); }
function render(w) {
  $("account").textContent = "account " + w.account;
  $("error").textContent = w.error || "";
  if (w.balance === null || w.balance === undefined) return;
  $("balance").textContent = w.balance.toLocaleString("en") + " scryp";
  $("verified").textContent = "round " + w.round + ", verified by " + w.verified_by;
  $("sync").textContent = "last sync: " + w.sync + ", " + w.bytes_downloaded + " bytes";
  const list = $("payments");
  list.replaceChildren();
  for (const p of w.payments) {
    const li = document.createElement("li");
    li.className = "payment";
    const who = document.createElement("span");
    who.className = "mono";
    who.textContent = (p.direction === "in" ? "from " : "to ") + short(p.counterparty);
    const amount = document.createElement("span");
    amount.className = p.direction;
    amount.textContent = (p.direction === "in" ? "+" : "−") + p.amount.toLocaleString("en");
    const round = document.createElement("span");
    round.className = "muted";
    round.textContent = "round " + p.round;
    li.append(who, amount, round);
    list.append(li);
  }
  if (!w.payments.length) list.innerHTML = '<li class="muted">no payments synced yet</li>';
  $("since").textContent = (w.from_round === 0 ? "since the genesis, verified" :
    "since round " + w.from_round) + (w.archive_error ? " (" + w.archive_error + ")" : "");
  $("agree").textContent = "certified round " + w.round + ": signed by servers " +
    w.signers.join(", ") + "; pointers of " + w.agreeing.join(", ") + " agree";
  const rows = $("servers");
  rows.replaceChildren();
  for (const s of w.network_servers) {
    const tr = document.createElement("tr");
    for (const text of [s.api, s.up ? s.role : "down", s.round ?? "–",
                        s.certified_round ?? "–"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    rows.append(tr);
  }
}
async function poll() {
  try {
    const r = await fetch("/api/wallet");
    render(await r.json());
  } catch (e) {
    $("error").textContent = "wallet server not answering";
  }
}
$("pay").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("pay-result");
  out.className = "muted";
  out.textContent = "sending…";
  $("send").disabled = true;
  try {
    const payment = {payee: $("payee").value.trim(), amount: $("amount").value};
    const r = await fetch("/api/pay", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(payment)});
    const body = await r.json();
    if (!r.ok) { out.className = "bad"; out.textContent = body.error; }
    else if (body.status === "accepted") {
      out.className = "ok";
      out.textContent = "paid " + body.amount + " scryp, certified in round " + body.round;
    } else { out.className = "bad"; out.textContent = "rejected: " + body.reason; }
  } catch (e) { out.className = "bad"; out.textContent = "wallet server not answering"; }
  $("send").disabled = false;
  poll();
});
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""
