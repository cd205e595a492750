// Type declarations of rohrpost.js, the rohrpost client (docs/js-client.md).
// Self-contained: they need neither the DOM library nor @types/node.

/** A JSON value as it travels in `data`. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A request id: the client's are integers; the server's pushes carry its own. */
export type MessageId = number | string;

/** The least the client needs of a WebSocket (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** Present on `ws`: used to drop a silent socket without waiting for its close handshake. */
  terminate?(): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A WebSocket class: `new WebSocket(url, protocols, socketOptions)`. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[], options?: any): WebSocketLike;
}

/** The group object of a `subscribe` request, e.g. `{type: "board", id: 1}`. */
export type GroupObject = { [key: string]: Json };

/** Where a group's stream of pushes stands (groups with history): offsets compare within one epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** The server's reply to `subscribe` and `unsubscribe`. */
export interface SubscribeReply<S = any> {
  group: string;
  /** Kinds with history: where the group's stream stands as the reply is sent. */
  position?: Position;
  /** After a resubscribe `since` a position: how many missed pushes were replayed before the reply. */
  resumed?: number;
  /** The pushes after `since` are gone: start again from `snapshot` (the client emits "reset"). */
  reset?: true;
  /** Kinds with a snapshot, on a first subscribe or a reset: the state as of `position`. */
  snapshot?: S;
}

/** The `data` of a `subscription-update` push. */
export interface SubscriptionUpdate<T = any> {
  type: "create" | "update" | "delete" | (string & {});
  group: string;
  object: T;
}

/** Any frame the server sends, as the `message` event hands it over. */
export interface Frame {
  id?: MessageId;
  type?: string;
  data?: any;
  error?: string;
  code?: string;
  [field: string]: unknown;
}

/** Codes of the errors the client makes itself. */
export type ClientErrorCode =
  "timeout" | "connection_lost" | "closed" | "queue_full" | "socket_error" | "invalid_frame" | "unsubscribed";

export const CLIENT_ERROR_CODES: Readonly<{
  TIMEOUT: "timeout";
  CONNECTION_LOST: "connection_lost";
  CLOSED: "closed";
  QUEUE_FULL: "queue_full";
  SOCKET_ERROR: "socket_error";
  INVALID_FRAME: "invalid_frame";
  UNSUBSCRIBED: "unsubscribed";
}>;

/** An error answer from the server (its `code`), or a failure of the client (a ClientErrorCode). */
export class RohrpostError extends Error {
  constructor(
    message: string,
    details?: { code?: string; data?: unknown; type?: string; id?: MessageId; cause?: unknown },
  );
  name: "RohrpostError";
  /** The server's machine code (`forbidden`, `invalid`, ...) or a ClientErrorCode. */
  code: ClientErrorCode | (string & {}) | undefined;
  /** Detail: the server error's `data`; for `connection_lost` and `closed`, `{code, reason}` of the close. */
  data: any;
  /** The type of the request this error answers. */
  type: string | undefined;
  /** The id of the request this error answers. */
  id: MessageId | undefined;
}

export interface RohrpostClientOptions {
  /** Sent as `auth_jwt` with every call, subscribe and unsubscribe. Default: none. */
  token?: string | null;
  /** Milliseconds between keepalive pings; 0 turns them off. Default 30000. */
  pingInterval?: number;
  /** Milliseconds a ping may go unanswered before the socket is replaced. Default: min(pingInterval, 10000). */
  pingTimeout?: number | null;
  /** Default timeout of call(), subscribe() and unsubscribe(), in ms; 0 for none. Default 10000. */
  callTimeout?: number;
  /** Milliseconds the WebSocket handshake may take; 0 for no limit. Default 10000. */
  connectTimeout?: number;
  /** Reconnect after the connection is lost. Default true. */
  reconnect?: boolean;
  /** First reconnect delay in ms; it doubles with each failed attempt. Default 500. */
  reconnectDelay?: number;
  /** Longest reconnect delay in ms (and the delay after close code 4029). Default 30000. */
  maxReconnectDelay?: number;
  /** Close codes after which the client stops instead of reconnecting. Default [4001, 4003]. */
  stopCodes?: readonly number[];
  /** Most calls that wait for a connection; more are rejected with `queue_full`. Default 100. */
  maxQueue?: number;
  /**
   * Milliseconds a gap in a group's offsets may stay open (pushes that crossed close it by
   * themselves) before the client asks the server for the missing pushes. Default 1000.
   */
  gapFillDelay?: number;
  /** Sub-protocols for the WebSocket constructor. */
  protocols?: string | string[];
  /** Third argument of the WebSocket constructor: `ws`'s options (`origin`, `headers`, ...). */
  socketOptions?: any;
  /** The WebSocket class. Default: `globalThis.WebSocket` (browsers); on Node 20 pass `ws`. */
  WebSocket?: WebSocketConstructor;
}

export interface CallOptions {
  /** Milliseconds until the call is rejected with `timeout`; 0 for none. Default: the client's callTimeout. */
  timeout?: number;
}

export interface OpenEvent {
  /** True from the second connection on: subscriptions were sent again. */
  reconnected: boolean;
}

export interface ClosedEvent {
  /** The close code; 1006 when the socket failed or the client gave up on it (no pong, no handshake). */
  code: number;
  reason: string;
  wasClean: boolean;
  /** False when the client stopped: close(), `reconnect: false` or one of `stopCodes`. */
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** 1 for the first attempt after a loss. */
  attempt: number;
  /** Milliseconds until the attempt. */
  delay: number;
  /** The close code that ended the previous connection. */
  code: number;
}

export interface UnsubscribedEvent {
  group: string;
  reason: string | null;
  /** Code `unsubscribed` for the server's push, or the server's refusal of a resubscribe. */
  error: RohrpostError;
}

export interface ResetEvent<S = any> {
  group: string;
  /** The state to start again from, when the group's kind has a snapshot; else null (reload by other means). */
  snapshot: S | null;
  /** The position the snapshot stands at; the pushes that follow come after it. */
  position: Position;
}

export interface RohrpostEvents {
  open: OpenEvent;
  closed: ClosedEvent;
  reconnecting: ReconnectingEvent;
  error: RohrpostError;
  message: Frame;
  unsubscribed: UnsubscribedEvent;
  /** Pushes of a group with history were lost (server restarted, history expired): reload its state. */
  reset: ResetEvent;
}

export type EventName = keyof RohrpostEvents;

/** A group listener: `error` is set (and `update` undefined) when the subscription ended. */
export type GroupListener<T = any> = (error: RohrpostError | null, update: SubscriptionUpdate<T>) => void;

/** A group name for on() / once() / off(): any string but an event name (use onGroup() for those). */
export type GroupName<G extends string> = G extends EventName ? never : G;

export type ClientState = "connecting" | "open" | "reconnecting" | "stopped" | "closed";

export const EVENTS: readonly EventName[];
export const STOP_CODES: readonly number[];
export const CLOSE_FLOODING: 4029;
/** Pushes applied beyond a gap in a group's offsets after which the client asks for the missing ones at once. */
export const MAX_AHEAD: number;
export const DEFAULTS: Readonly<
  Required<Omit<RohrpostClientOptions, "WebSocket" | "protocols" | "socketOptions">>
> &
  Readonly<Pick<RohrpostClientOptions, "WebSocket" | "protocols" | "socketOptions">>;

/**
 * A server's API, as `python -m rohrpost schema --typescript` declares it (its `Api`):
 * the `data` each request type takes and its reply returns, and per subscription kind
 * the group object and the pushed object.
 */
export interface ApiShape {
  requests: object;
  replies: object;
  groupObjects?: object;
  pushes?: object;
}

/** The API of a client made without one: every type takes and returns anything. */
export interface UntypedApi {
  requests: {};
  replies: {};
}

/** What follows the type in `call`: `data` may be left out where the type takes null or anything. */
export type CallArguments<D> = null extends D
  ? [data?: D, options?: CallOptions]
  : [data: D, options?: CallOptions];

/** The request types an API declares. */
export type RequestType<A extends ApiShape> = keyof A["requests"] & string;
/** The reply `data` of request type `K`. */
export type ReplyData<A extends ApiShape, K> = K extends keyof A["replies"] ? A["replies"][K] : unknown;
/** A type name the API does not declare (`never` for a declared one). */
export type UndeclaredType<A extends ApiShape, N extends string> = N extends RequestType<A> ? never : N;
/** The group objects an API declares; any group object for an API without them. */
export type GroupObjectOf<A extends ApiShape> = A extends { groupObjects: infer G }
  ? [keyof G] extends [never]
    ? GroupObject
    : G[keyof G]
  : GroupObject;

export class RohrpostClient<A extends ApiShape = UntypedApi> {
  /** Connects at once. */
  constructor(url: string, options?: RohrpostClientOptions);

  readonly url: string;
  readonly options: Readonly<RohrpostClientOptions>;
  readonly state: ClientState;
  /** The token sent as `auth_jwt`; set it to change the token of the requests that follow. */
  token: string | null;
  /** Names of the groups with a confirmed subscription (resubscribed after reconnects). */
  readonly groups: string[];
  /** The last position applied in a group with history; null for none. */
  positionOf(group: string): Position | null;

  setToken(token: string | null): this;

  /**
   * Send a request; resolves with the reply's `data`, rejects with a RohrpostError.
   * With a generated API (`new RohrpostClient<Api>(url)`), a declared type's `data`
   * is checked and its reply typed.
   */
  call<K extends RequestType<A>>(type: K, ...rest: CallArguments<A["requests"][K]>): Promise<ReplyData<A, K>>;
  call<T = any, N extends string = string>(
    type: UndeclaredType<A, N>,
    data?: unknown,
    options?: CallOptions,
  ): Promise<T>;
  /** Join the group a group object names; kept and resubscribed after reconnects. */
  subscribe<S = any>(group: GroupObjectOf<A>, options?: CallOptions): Promise<SubscribeReply<S>>;
  /** Leave a group; it is no longer resubscribed, whatever the answer. */
  unsubscribe(group: GroupObjectOf<A>, options?: CallOptions): Promise<SubscribeReply>;

  on<E extends EventName>(event: E, listener: (payload: RohrpostEvents[E]) => void): this;
  on<T = any, G extends string = string>(group: GroupName<G>, listener: GroupListener<T>): this;
  once<E extends EventName>(event: E, listener: (payload: RohrpostEvents[E]) => void): this;
  once<T = any, G extends string = string>(group: GroupName<G>, listener: GroupListener<T>): this;
  /** Without a listener, removes every listener of the name. */
  off<E extends EventName>(event: E, listener?: (payload: RohrpostEvents[E]) => void): this;
  off<T = any, G extends string = string>(group: GroupName<G>, listener?: GroupListener<T>): this;
  /** Listen to a group's pushes even when its name is also an event name. */
  onGroup<T = any>(group: string, listener: GroupListener<T>): this;
  offGroup<T = any>(group: string, listener?: GroupListener<T>): this;

  /** Connect anew now (after a stop, or replacing the current connection); resets the backoff. */
  reconnect(): this;
  /** Close for good: no reconnects; unanswered and queued calls are rejected with `closed`. */
  close(code?: number, reason?: string): void;
}

export default RohrpostClient;
