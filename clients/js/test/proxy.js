// A TCP proxy between a client and the demo server that a test can break on purpose.
//
//   cut()        destroy every connection (the client sees the socket close)
//   blackhole()  stop forwarding, both ways, on the open connections and on new ones,
//                without closing them (pings and handshakes go unanswered)
//   refuse()     destroy every connection, and each new one at once
//   heal()       forward new connections again
//
// Real sockets on 127.0.0.1; nothing of the client is replaced.

import net from "node:net";

export async function startProxy(targetPort, { localAddress } = {}) {
  const pairs = new Set();
  let mode = "forward"; // or "blackhole", "refuse"

  const server = net.createServer((downstream) => {
    if (mode === "refuse") {
      downstream.destroy();
      return;
    }
    // `localAddress` (another 127/8 address) gives the server a client address of its own.
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort, localAddress });
    const pair = { downstream, upstream, blackholed: mode === "blackhole" };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("data", (chunk) => pair.blackholed || upstream.write(chunk));
    upstream.on("data", (chunk) => pair.blackholed || downstream.write(chunk));
    for (const socket of [downstream, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });

  const cut = () => {
    for (const { downstream, upstream } of [...pairs]) {
      downstream.destroy();
      upstream.destroy();
    }
    pairs.clear();
  };

  return {
    port: server.address().port,
    /** How many client connections are open through the proxy. */
    get connections() {
      return pairs.size;
    },
    cut,
    blackhole() {
      mode = "blackhole";
      for (const pair of pairs) pair.blackholed = true;
    },
    refuse() {
      mode = "refuse";
      cut();
    },
    heal() {
      mode = "forward";
    },
    close() {
      cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
