// The demo page's protocol playground: round trips, raw requests and the frames seen.

const PING_EVERY_MS = 1000;
const MAX_FRAMES = 15;

/** Wire the playground's elements (found with `$`, by id) to `client`. */
export function startPlayground(client, $) {
  const rtt = { count: 0, total: 0, min: Infinity };

  function logFrame(direction, text) {
    if (!$("show-pings").checked && /"type"\s*:\s*"(ping|pong)"/.test(text)) return;
    const item = document.createElement("li");
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date().toLocaleTimeString([], { hour12: false });
    const arrow = document.createElement("span");
    arrow.className = direction;
    arrow.textContent = direction === "in" ? "←" : "→";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    body.title = text;
    item.append(when, arrow, body);
    const frames = $("frames");
    frames.prepend(item);
    while (frames.children.length > MAX_FRAMES) frames.lastElementChild.remove();
  }

  client.on("message", (frame) => logFrame("in", typeof frame === "string" ? frame : JSON.stringify(frame)));

  async function measure() {
    const started = performance.now();
    try {
      await client.call("ping", undefined, { timeout: 2000 });
    } catch {
      return;
    }
    const ms = performance.now() - started;
    rtt.count += 1;
    rtt.total += ms;
    rtt.min = Math.min(rtt.min, ms);
    $("rtt-last").textContent = `${ms.toFixed(1)} ms`;
    $("rtt-min").textContent = `${rtt.min.toFixed(1)} ms`;
    $("rtt-avg").textContent = `${(rtt.total / rtt.count).toFixed(1)} ms`;
    $("rtt-count").textContent = String(rtt.count);
  }
  setInterval(() => { if ($("demo").querySelector("details[open]")) measure(); }, PING_EVERY_MS);

  $("request-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const reply = $("reply");
    let data;
    try {
      data = form.elements.data.value.trim() ? JSON.parse(form.elements.data.value) : undefined;
    } catch (error) {
      reply.dataset.kind = "error";
      reply.textContent = `The data is not JSON: ${error.message}`;
      return;
    }
    const type = form.elements.type.value.trim();
    logFrame("out", JSON.stringify(data === undefined ? { type } : { type, data }));
    try {
      const answer = await client.call(type, data);
      reply.dataset.kind = "ok";
      reply.textContent = JSON.stringify(answer, null, 2) ?? "(no data)";
    } catch (error) {
      reply.dataset.kind = "error";
      reply.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message ?? error);
    }
  });
}
