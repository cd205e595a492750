// Compiled by `npm run typecheck` (tsc --noEmit): rohrpost.d.ts describes the API the
// way applications use it. Nothing here runs.

import RohrpostClientDefault, {
  RohrpostClient,
  RohrpostError,
  type ClosedEvent,
  type SubscriptionUpdate,
  type WebSocketConstructor,
} from "../src/rohrpost.js";
import type { Api, Pushes, TaskOut } from "../../../example/demo/static/demo/api.js";

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
    gapFillDelay: 500,
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
  client.on("reset", ({ group: again, snapshot, position }) => show(again, snapshot, position.epoch, position.offset));
  const held = client.positionOf("board-1");
  show(held?.offset);
  const reply = await client.subscribe<{ tasks: Task[] }>({ type: "board", id: 2 });
  show(reply.position?.epoch, reply.snapshot?.tasks.length, reply.resumed, reply.reset);
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

// The demo's API, generated from its handlers' types by
// `python -m rohrpost schema --typescript` (tests/test_schema.py keeps it current).
async function typedUsage(): Promise<void> {
  const client = new RohrpostClient<Api>("ws://127.0.0.1:8000/ws/rohrpost/");
  const task: TaskOut = await client.call("task.add", { board: 1, title: "x" });
  const tasks: TaskOut[] = await client.call("tasks", { board: task.board }, { timeout: 500 });
  const boards = await client.call("boards");
  const sum: number = await client.call("add", [1, 2.5]);
  const echoed: unknown = await client.call("echo", { any: ["thing"] });
  const pong = await client.call<string>("not.in.the.api", 1);
  await client.subscribe({ type: "board", id: task.board });
  client.on<Pushes["board"]>("board-1", (error, update) => show(error, update.object.title));
  show(tasks.length, boards[0]?.private, sum, echoed, pong.length);

  // @ts-expect-error: task.add needs a title
  await client.call("task.add", { board: 1 });
  // @ts-expect-error: a board id is a number
  await client.call("tasks", { board: "1" });
  // @ts-expect-error: task.add takes data
  await client.call("task.add");
  // @ts-expect-error: the reply of tasks is a list of tasks
  const wrong: string = await client.call("tasks", { board: 1 });
  // @ts-expect-error: the demo declares no group object of type "room"
  await client.subscribe({ type: "room", id: 1 });
  show(wrong);
}

void typedUsage;
