// Compiled by `npm run typecheck` (tsc --noEmit): rohrpost.d.ts describes the API the
// way applications use it. Nothing here runs.

import RohrpostClientDefault, {
  RohrpostClient,
  RohrpostError,
  type ClosedEvent,
  type SubscriptionUpdate,
  type WebSocketConstructor,
} from "../src/rohrpost.js";

interface Task {
  id: number;
  board: number;
  title: string;
  done: boolean;
}

declare const SomeWebSocket: WebSocketConstructor;
declare function show(...values: unknown[]): void;

async function usage(): Promise<void> {
  const client: RohrpostClient = new RohrpostClientDefault("ws://127.0.0.1:8000/ws/rohrpost/", {
    WebSocket: SomeWebSocket,
    socketOptions: { origin: "http://127.0.0.1:8000" },
    pingInterval: 5000,
    token: "abc",
    stopCodes: [4001],
  });
  client.token = null;
  client.setToken("def").on("open", ({ reconnected }) => show(reconnected));

  const { group }: { group: string } = await client.subscribe({ type: "board", id: 1 });
  client.on<Task>(group, (error, update) => {
    if (error) return show(error.code);
    const task: Task = update.object;
    const kind: SubscriptionUpdate["type"] = update.type;
    show(task.title, kind);
  });
  client.on("closed", (event: ClosedEvent) => {
    if (!event.willReconnect && event.code === 4003) client.reconnect();
  });
  client.on("unsubscribed", ({ group: left, reason, error }) => show(left, reason ?? "", error.code));
  client.on("error", (error) => show(error instanceof RohrpostError, error.code));
  client.on("message", (frame) => show(frame.type, frame.id));
  client.once("board-2", (error, update) => show(error?.code, update.object));
  client.onGroup("error", (error, update) => show(error, update.group));

  const sum = await client.call<number>("add", [1, 2, 3], { timeout: 2000 });
  show(sum.toFixed(0), client.state, client.groups.join());
  try {
    await client.call("task.add", { board: 1, title: "x" });
  } catch (error) {
    if (error instanceof RohrpostError) show(error.code, error.message, error.data, error.type, error.id);
  }
  await client.unsubscribe({ type: "board", id: 1 });
  client.off("error").close();
}

// @ts-expect-error: an event name is no group name for on(); `closed` gets a ClosedEvent
new RohrpostClient("ws://x").on(
  "closed",
  (error: RohrpostError | null, update: SubscriptionUpdate) => update,
);
// @ts-expect-error: group listeners take (error, update)
new RohrpostClient("ws://x").on("board-1", (update: number) => update);

void usage;
