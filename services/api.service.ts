/**
 * REST gateway (moleculer-web). Only actions that declare a `rest:` alias are reachable, and only
 * through the /api routes below; authentication, authorization and rate limits live here, once.
 */
import { isUtf8 } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import type { Context, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type {} from "moleculer-web";
import { clientAddress } from "../lib/client-ip";
import { readConfig } from "../lib/config";
import { verifyAccessToken, verifyExpiredAccessToken } from "../lib/jwt";
import { buildOpenApi, type RouteInfo } from "../lib/openapi";
import { ResponseCache } from "../lib/response-cache";
import { isShopRoute, shopRouteMethods, SHOP_ROUTES } from "../lib/rest-routes";
import { MAX_BODY_ITEMS, bodyShapeProblem, jsonItemsOver, queryShapeProblem, withoutSecrets } from "../lib/request-shape";
import { createRateLimitStore, MemoryRateLimitStore, type RateLimitStore, type WindowHit } from "../adapters/rate-limit-store";
import { isRedisUnavailable } from "../adapters/redis-connection";
import { BROKER_UNAVAILABLE_ERRORS, MethodNotAllowedError, UnauthorizedError, ForbiddenError, TooManyRequestsError, BadRequestError, PayloadTooLargeError, ServiceUnavailableError, UnsupportedMediaTypeError } from "../lib/errors";
import type { AuthUser, ShopMeta } from "../mixins/types";
import { actionAvailable, waitForAction } from "../mixins/node-away.middleware";
import type { EventEmitter } from "node:events";
import { STOPPING_EVENT } from "../mixins/stop-notice.middleware";
import { portProblem } from "../mixins/health-probe.middleware";
import { ifNoneMatchHits, weakEtag } from "../lib/etag";
import { hostHeaderProblem, normalizeRequestTarget } from "../lib/request-target";
import { COMPRESS_MIN_BYTES, acceptedCoding, compressOnce, varyOn } from "../lib/content-encoding";
import { clientErrorResponse, clientErrorStatus } from "../lib/client-errors";
import { defineMetric } from "../mixins/define-metric";
import { closeListener } from "../lib/close-listener";
import type { Duplex } from "node:stream";

type Req = IncomingMessage & {
	$action?: any;
	$alias?: any;
	$params?: any;
	$route?: any;
	$ctx?: Context;
	/** process.hrtime() when moleculer-web took the request. */
	$startTime?: [number, number];
	body?: any;
	parsedUrl?: string;
	originalUrl?: string;
	query?: Record<string, unknown>;
	/** A HEAD request, routed as its GET. */
	$head?: boolean;
	/** Set on a response-cache miss: where and under which generation to store the answer. */
	$responseCache?: { key: string; tag: string; generation: number };
	/** The request's If-None-Match, kept from moleculer-web (httpHandler). */
	$ifNoneMatch?: string;
};
/** A moleculer-web alias: one route to one action. */
interface Alias {
	method: string;
	fullPath: string;
	action?: string;
	path: string;
	/** The moleculer-web route it belongs to. */
	route: unknown;
	isMethod(method: string): boolean;
	match(url: string): unknown;
}
/** The key of a route in routesSeen. */
const routeKey = (alias: Alias) => `${alias.method} ${alias.fullPath}`;

/**
 * A connection as a stop sees it: requests in flight, when it was last active, and how many bytes it had
 * read when its last answer ended (more since: a next request is on its way, its headers not all in).
 */
type TrackedSocket = Socket & { shopBusy?: number; shopLastActive?: number; shopReadWhenIdle?: number; shopRefused?: boolean };
/** How often a drain looks for connections gone quiet. */
const DRAIN_POLL_MS = 25;

interface ApiVars {
	rateLimitStore: RateLimitStore;
	/** Counts the general limit on this gateway alone while rateLimitStore (Redis) is down. */
	localRateLimit: RateLimitStore;
	/** When a Redis failure that reached sendShopError was last logged (once a minute, not per request). */
	redisWarnedAt: number;
	/** Responses not finished yet, so that a stop can ask each to close its connection. */
	openResponses: Set<ServerResponse>;
	/** Counts an answer sent, by status (http_responses_total); nothing with metrics off. */
	countResponse: (status: number) => void;
	/** Stopping: every response closes its connection. */
	draining: boolean;
	/** Once the listener is closing (stopAccepting): settles when the server has closed. */
	serverClosed?: Promise<void>;
	/** Its listener on the broker's local bus for the start of a stop. */
	onStopping: () => void;
	/** The server's open connections, each with when it last carried a request (drainConnections). */
	connections: Set<TrackedSocket>;
	/** TRUST_PROXY: proxies in front of this gateway, read when it is created. */
	trustProxy: number;
	/** COMPRESSION: answers compressed for clients that take it, read when the gateway is created. */
	compression: boolean;
	aliases: Alias[];
	/** Every route this gateway has served since it started, by method and path (see knownRoute). */
	routesSeen: Map<string, Alias>;
	/** The definition of every action a route of this gateway has led to, as last seen (see routeInfos). */
	actionsSeen: Map<string, any>;
	server: import("node:http").Server;
	openApiCache?: { key: string; doc: unknown };
	responseCache: ResponseCache;
}
interface ApiMethods {
	beforeCall(ctx: Context<unknown, ShopMeta>, req: Req, res: ServerResponse): Promise<void>;
	sendShopError(req: Req, res: ServerResponse, err: unknown): void;
	responseCounter(): (status: number) => void;
	knownRoute(req: Req): boolean;
	allowedMethods(path: string): string[];
	routeInfos(): RouteInfo[];
	openApiDocument(): unknown;
	drainConnections(): Promise<void>;
	releaseConnections(closed: Promise<void>): Promise<void>;
	stopAccepting(): Promise<void> | null;
	[name: string]: (...args: any[]) => any;
}
type ApiSettings = Record<string, any>;

const cfg = readConfig();
/** The order an `Allow` header lists methods in. */
const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const BODY_LIMIT_BYTES = 1024 * 1024;
/** As errors name it. */
const BODY_LIMIT = `${BODY_LIMIT_BYTES / (1024 * 1024)}mb`;

/**
 * Response bodies of cached action results, by result object. The in-memory cacher hands every
 * caller the very same object, so a cached product list is serialized once instead of once per
 * request (JSON.stringify of a 14 KB page was the largest cost of serving it). Weak: an entry
 * lives exactly as long as the cacher keeps the result.
 */
const encodedResults = new WeakMap<object, Buffer>();
/** ETags of those bodies (and of the response cache's), computed once per body. */
const bodyEtags = new WeakMap<Buffer, string>();

function etagOf(body: string | Buffer): string {
	if (typeof body === "string") return weakEtag(body);
	let tag = bodyEtags.get(body);
	if (!tag) bodyEtags.set(body, (tag = weakEtag(body)));
	return tag;
}

/**
 * The headers a response gets from its body: its length, and a GET's 200 its ETag. True when it is a
 * 304: the request's If-None-Match names the tag. Only a GET's: a POST with `If-None-Match: *` is no
 * revalidation. The length is set here, not left to Node: Node sends none for a HEAD's dropped body
 * (RFC 9110 suggests it, link checkers read it), nor to an HTTP/1.0 client, whose keep-alive then ends
 * with every answer (ApacheBench, and proxies that speak 1.0 to their upstream, as nginx does by default).
 */
function describeBody(req: Req, res: ServerResponse, body: string | Buffer, length: number): boolean {
	res.setHeader("Content-Length", length);
	if (req.method !== "GET" || res.statusCode !== 200) return false;
	const tag = etagOf(body);
	res.setHeader("ETag", tag);
	return ifNoneMatchHits(req.$ifNoneMatch, tag);
}

/** What the body parser refused, as the shop's error: here its status is still known (moleculer-web keeps only a code). */
function bodyError(err: { type?: string; status?: number }): Error {
	if (err.type === "entity.parse.failed") return new BadRequestError("Malformed JSON body", "INVALID_JSON");
	// Thrown by checkBodyBytes, with the reason as its message.
	if (err.type === "entity.verify.failed") return new BadRequestError((err as Error).message, "INVALID_BODY");
	if (err.type === "entity.too.large") return new PayloadTooLargeError(BODY_LIMIT);
	if (err.status === 415) return new UnsupportedMediaTypeError("Unsupported content encoding or charset");
	// A compressed body that does not inflate, a body shorter than its Content-Length, ...
	if (err.status !== undefined && err.status >= 400 && err.status < 500) return new BadRequestError("Malformed request body", "INVALID_BODY");
	return err as Error;
}

/**
 * A JSON body's bytes, before they are parsed. They must be UTF-8: decoded as they are, bytes that are
 * not would become U+FFFD and be stored as such (a name read "a\uFFFD\uFFFD\uFFFD"). And they may not
 * hold more items than any shop body does. body-parser reports the throw as entity.verify.failed.
 */
function checkBodyBytes(_req: IncomingMessage, _res: ServerResponse, buf: Buffer) {
	if (!isUtf8(buf)) throw new Error("The body is not valid UTF-8");
	// Before the parse, which is where such a body costs (lib/request-shape.ts).
	if (jsonItemsOver(buf, MAX_BODY_ITEMS)) throw new Error(`The body holds more than ${MAX_BODY_ITEMS} properties and array elements`);
}

/** A refused body's client may send for this long between checks (so 2–4 s of quiet), and at most LINGER_MAX_MS, before its connection closes. */
const LINGER_IDLE_MS = 2000;
const LINGER_MAX_MS = 30_000;

/**
 * Our half of the close, then what the client still sends is read and dropped until it stops (RFC 9112
 * 9.6). Closed outright, the next byte it sent would reset the connection, and a reset can discard the
 * answer before a client that reads only once it has sent everything (as many do) sees it.
 */
function lingerThenClose(socket: Socket) {
	// Gone already (the client left): no "close" to come, and nothing to linger for.
	if (socket.destroyed) return;
	socket.end();
	const started = Date.now();
	let seen = socket.bytesRead;
	const check = setInterval(() => {
		if (socket.bytesRead === seen || Date.now() - started >= LINGER_MAX_MS) socket.destroy();
		seen = socket.bytesRead;
	}, LINGER_IDLE_MS);
	check.unref();
	socket.once("close", () => clearInterval(check));
}

/**
 * The connection of a request whose body is refused while it may still be coming in closes once `res` is
 * answered, gently (lingerThenClose). Requests the client sent after it on the connection are not run
 * (httpHandler): a `Connection: close` answer is its last.
 */
function closeAfter(req: IncomingMessage, res: ServerResponse) {
	const socket = req.socket as TrackedSocket & { destroySoon(): void };
	socket.shopRefused = true;
	if (!res.headersSent) {
		res.setHeader("Connection", "close");
		// What Node calls once the answer of a `Connection: close` response is written.
		socket.destroySoon = () => lingerThenClose(socket);
	} else if (res.writableFinished) lingerThenClose(socket);
	else res.once("finish", () => lingerThenClose(socket));
}

/** The body's declared length is over the limit: refused before any of it is read. */
function declaresTooLarge(req: IncomingMessage): boolean {
	return Number(req.headers["content-length"]) > BODY_LIMIT_BYTES;
}

function refuseTooLarge(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) {
	closeAfter(req, res);
	next(new PayloadTooLargeError(BODY_LIMIT));
}

/** One of moleculer-web's body parsers (body-parser), reporting its refusals as bodyError does. */
function bodyParser(kind: "json" | "raw", opts: Record<string, unknown>) {
	const parse = (ApiGateway as any).bodyParser[kind]({ limit: BODY_LIMIT_BYTES, ...opts });
	return async (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
		const getLike = req.method === "GET" || req.method === "HEAD";
		// Refused for its body below: but a chunked body of no bytes (Node's req.write(""), fetch with an empty
		// stream) is no body, as Content-Length: 0 is.
		if (hasBody(req) && (getLike || (kind === "json" && !isJson(req))) && isChunked(req) && (await bodyIsEmpty(req))) {
			(req as Req).body = {};
			return next();
		}
		// moleculer-web would merge a GET's body into the params, unseen in the URL that the response
		// cache keys on: one request could have emptied the product list every guest gets for 30 s.
		if (getLike && hasBody(req)) {
			return next(new BadRequestError(`A ${req.method} request takes its parameters in the query string, not a body`, "BODY_NOT_ALLOWED"));
		}
		// A body of another type would be skipped, and the request judged as if it had none.
		if (kind === "json" && hasBody(req) && !isJson(req)) return next(new UnsupportedMediaTypeError("Send the body as JSON (Content-Type: application/json)"));
		// body-parser takes any utf-* charset, then the UTF-8 check calls a UTF-16 body malformed (a 400): it is one
		// the shop does not read, as latin1 is (415).
		if (kind === "json" && hasBody(req) && otherUnicodeCharset(req)) return next(new UnsupportedMediaTypeError("Send JSON in UTF-8 (charset=utf-8)"));
		// Declared over the limit: refused at once, as with Expect: 100-continue, not once all of it has come in
		// (body-parser reads a refused body to its end before it answers).
		if (declaresTooLarge(req)) return refuseTooLarge(req, res, next);
		// Sent in chunks, without a length: refused as soon as the limit is passed, the parser's own refusal
		// (which comes once the body has ended) left unanswered.
		let settled = false;
		let received = 0;
		const count = (chunk: Buffer) => {
			received += chunk.length;
			if (received <= BODY_LIMIT_BYTES) return;
			req.off("data", count);
			// The parser settled it before its end (a charset it does not read, bytes after a compressed body's
			// end): Node would read and drop the rest for as long as it comes. It is cut off after the answer.
			if (settled) return closeAfter(req, res);
			settled = true;
			refuseTooLarge(req, res, next);
		};
		if (isChunked(req)) req.on("data", count);
		parse(req, res, (err?: any) => {
			if (settled) return;
			settled = true;
			if (req.complete) req.off("data", count);
			next(err ? bodyError(err) : undefined);
		});
	};
}

/**
 * Refuses query strings and JSON bodies of a shape no shop route takes (lib/request-shape.ts) with a
 * 400 naming the field, and leaves out query values left blank.
 */
function requestShape(req: Req, _res: ServerResponse, next: (err?: unknown) => void) {
	const query = queryShapeProblem(req.query);
	if (query) return next(new BadRequestError(query.message, "INVALID_QUERY", [{ field: query.field, message: query.message }]));
	// `?maxPrice=` is what an HTML GET form sends for an empty box: "not given", where the validator
	// would read "" as 0 (an empty list) or refuse `?page=` for a value never sent. Query values only:
	// a "" in a JSON body was written on purpose.
	for (const [name, value] of Object.entries(req.query ?? {})) if (typeof value === "string" && value.trim() === "") delete req.query![name];
	if (hasBody(req)) {
		const body = bodyShapeProblem(req.body);
		if (body) return next(new BadRequestError(body.message, "INVALID_BODY", body.field ? [{ field: body.field, message: body.message }] : undefined));
	}
	next();
}

/** A CORS_ORIGINS entry with `*` wildcards, as a pattern: compiled once, not on every request with an Origin. */
const wildcardOrigins = new Map<string, RegExp>();
function wildcardOrigin(entry: string): RegExp {
	let pattern = wildcardOrigins.get(entry);
	if (!pattern) {
		pattern = new RegExp(`^${entry.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
		wildcardOrigins.set(entry, pattern);
	}
	return pattern;
}

const isChunked = (req: IncomingMessage) => req.headers["transfer-encoding"] !== undefined && req.headers["content-length"] === undefined;

/** Whether a chunked body ends without a byte; a first byte is put back for the body parser. */
function bodyIsEmpty(req: IncomingMessage): Promise<boolean> {
	return new Promise((resolve) => {
		const finish = (empty: boolean, chunk?: Buffer) => {
			req.off("data", onData);
			req.off("end", onEnd);
			req.off("error", onError);
			if (chunk) {
				req.pause();
				req.unshift(chunk);
			}
			resolve(empty);
		};
		const onData = (chunk: Buffer) => {
			if (chunk.length) finish(false, chunk);
		};
		const onEnd = () => finish(true);
		// A broken upload is not an empty one: refused as a body, so no action runs.
		const onError = () => finish(false);
		req.on("data", onData);
		req.once("end", onEnd);
		req.once("error", onError);
	});
}

const hasBody = (req: IncomingMessage) => req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
/** A Content-Type naming a Unicode charset other than UTF-8 (utf-16, utf-16le, utf-32, ...). */
const otherUnicodeCharset = (req: IncomingMessage) => {
	const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(req.headers["content-type"] ?? "")?.[1].toLowerCase();
	return !!charset && charset.startsWith("utf-") && charset !== "utf-8";
};
const isJson = (req: IncomingMessage) => /^application\/(?:[\w.-]+\+)?json$/.test((req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase());

/**
 * The broker stamps each validation problem with the node and the action that refused it:
 * internals, not the client's business.
 */
function publicData(data: unknown): unknown {
	if (!Array.isArray(data)) return data;
	return data.map((item) => {
		if (item === null || typeof item !== "object") return item;
		const { nodeID: _node, action: _action, ...rest } = item as Record<string, unknown>;
		// The value refused, echoed back: only a plain one (a client's structure can be any size).
		if (rest.actual !== null && typeof rest.actual === "object") delete rest.actual;
		// A pattern's source says less than the message, and may hold the very characters it refuses.
		if (rest.type === "stringPattern") delete rest.expected;
		return rest;
	});
}

/** The request's URL as logs and spans may show it: a secret's value in its query masked (withoutSecrets). */
const loggedUrl = (req: Req): string => withoutSecrets(req.originalUrl ?? req.url ?? "");

/**
 * A proxy's request id moleculer-web may take (see httpHandler): a UUID, or 16 to 32 hex digits (nginx's
 * $request_id), in lower case (Zipkin refuses a trace id in upper case, and with it the whole batch of spans).
 */
const REQUEST_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,32})$/;
const REQUEST_ID_HEADERS = ["x-request-id", "x-correlation-id"] as const;

/** `[request id]` for a log line: the id the client got in X-Request-ID (none before the request reached a route). */
function requestIdOf(req: Req): string {
	const id = (req.$ctx as Context | undefined)?.requestID;
	return id ? `[${id}]` : "[-]";
}

/** An action that answers only a signed-in user (or only an admin). */
const needsUser = (action: any): boolean => action?.auth === "required" || (Array.isArray(action?.roles) && action.roles.length > 0);

function header(req: IncomingMessage, name: string): string | undefined {
	const v = req.headers[name];
	return Array.isArray(v) ? v[0] : v;
}

const ApiService: ServiceSchema<ApiSettings, ApiMethods, ApiVars> = {
	name: "api",
	mixins: [ApiGateway],

	settings: {
		port: cfg.port,
		ip: cfg.host,
		// Count limits per client per minute; the auth routes have their own, tighter bucket. `redisUrl`:
		// where the counts are shared with the other gateways (none: this gateway's own memory).
		shopRateLimit: { windowMs: 60_000, general: cfg.rateLimit, auth: cfg.authRateLimit, redisUrl: cfg.redisUrl },
		// ms an idle keep-alive connection stays open (KEEP_ALIVE_TIMEOUT).
		keepAliveTimeout: cfg.keepAliveTimeout,
		/**
		 * On stop (releaseConnections, drainConnections): how long a recently busy keep-alive connection may
		 * still carry a request, answered with `Connection: close` (half a second is ample for a busy client's
		 * next one); how long without a request makes a connection quiet, closed at once; how long a request
		 * may still be sending its body, and in-flight answers may take at the end. All well within
		 * SHUTDOWN_TIMEOUT, which bounds the whole stop.
		 */
		shutdownDrain: { idleMs: Math.min(500, cfg.shutdownTimeout / 5), quietMs: 250, maxMs: cfg.shutdownTimeout / 2 },
		cors: {
			origin: cfg.corsOrigins === "*" ? "*" : cfg.corsOrigins.split(",").map((s) => s.trim()),
			methods: ["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
			allowedHeaders: ["Content-Type", "Authorization", "Idempotency-Key", "X-Cart-Id", "If-None-Match"],
			// What a browser storefront's script may read: the guest cart, when to retry, its quota, where a
			// created resource lives, the id to quote to support, and the tag to revalidate an answer with.
			exposedHeaders: ["X-Cart-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "Location", "X-Request-ID", "ETag"],
			credentials: false,
			maxAge: 3600,
		},
		/** Anonymous GETs of `publicCache` actions answered from the gateway (0 entries turns it off). */
		responseCache: { maxEntries: 1000, maxAgeMs: 30_000 },
		log4XXResponses: false,
		logRequestParams: null,
		logResponseData: null,
		routes: [
			{
				// Stripe signs the exact bytes it sent, so this route keeps the body raw.
				name: "webhooks",
				path: "/api/payments",
				whitelist: ["payments.webhook"],
				aliases: { "POST /webhook": "payments.webhook" },
				mergeParams: false,
				authentication: false,
				authorization: false,
				bodyParsers: false,
				use: [bodyParser("raw", { type: () => true })],
				onBeforeCall(ctx: Context<unknown, ShopMeta>, _route: unknown, req: Req) {
					ctx.meta.rawBody = Buffer.isBuffer(req.body) ? req.body.toString("utf8") : ("" as any);
					ctx.meta.headers = { "stripe-signature": header(req, "stripe-signature") };
					req.$params = {};
				},
			},
			{
				name: "api",
				path: "/api",
				autoAliases: true,
				mappingPolicy: "restrict",
				aliases: {
					"GET /health": "api.health",
					"GET /openapi.json": "api.openapi",
				},
				authentication: true,
				authorization: true,
				bodyParsers: false,
				use: [bodyParser("json", { strict: false, type: ["application/json", "application/*+json"], verify: checkBodyBytes }), requestShape],
				callOptions: {},
				onBeforeCall(ctx: Context<unknown, ShopMeta>, _route: unknown, req: Req, res: ServerResponse) {
					return this.beforeCall(ctx, req, res);
				},
			},
		],
		onError(req: Req, res: ServerResponse, err: any) {
			this.sendShopError(req, res, err);
		},
	},

	actions: {
		// moleculer-web's alias listing would expose internals over HTTP.
		listAliases: false,
		// moleculer-web names each request's span after its URL and tags it with it: a secret a client put in
		// the query string (refused, but sent) is masked there as in the log (withoutSecrets).
		rest: {
			tracing: {
				spanName: (ctx: Context<{ req: Req }>) => `${ctx.params.req.method} ${loggedUrl(ctx.params.req)}`,
				tags: (ctx: Context<{ req: Req }>, ...afterCall: unknown[]) => (afterCall.length ? {} : { params: { req: { url: loggedUrl(ctx.params.req), method: ctx.params.req.method } } }),
			},
		} as any,
		health: {
			openapi: { response: "Health", errorBodies: { 503: { schema: "Health", description: "Starting or stopping: `status` says which" } } },
			params: {},
			handler(ctx: Context<unknown, ShopMeta>) {
				const services = [...new Set((this.broker.registry.getServiceList({ skipInternal: true, onlyAvailable: true }) as any[]).map((s) => s.name))].sort();
				const ready = this.broker.started && !this.broker.stopping;
				if (!ready) ctx.meta.$statusCode = 503;
				return { status: ready ? "ok" : this.broker.stopping ? "stopping" : "starting", nodeID: this.broker.nodeID, services };
			},
		},
		openapi: {
			openapi: { response: "OpenApiDocument" },
			params: {},
			handler() {
				return this.openApiDocument();
			},
		},
	},

	methods: {
		/**
		 * HEAD is a GET without its body (RFC 9110), which monitors and link checkers send: it is routed
		 * as the GET, and Node's response, made for a HEAD request, leaves the body out.
		 */
		httpHandler(req: Req, res: ServerResponse, next?: (err?: unknown) => void) {
			// Sent after a refused body on the same connection (closeAfter): not run, and not answered.
			if ((req.socket as TrackedSocket).shopRefused) return;
			res.setHeader("X-Content-Type-Options", "nosniff");
			// What a stop needs (releaseConnections): the answers still to send, those of requests that came in
			// during it too, and each connection's activity.
			if (this.draining) res.setHeader("Connection", "close");
			this.openResponses.add(res);
			const socket = req.socket as TrackedSocket;
			socket.shopBusy = (socket.shopBusy ?? 0) + 1;
			socket.shopLastActive = Date.now();
			res.once("close", () => {
				// An answer not begun when the connection closed was never sent.
				if (res.headersSent) this.countResponse(res.statusCode);
				this.openResponses.delete(res);
				socket.shopBusy = (socket.shopBusy ?? 1) - 1;
				socket.shopLastActive = Date.now();
				socket.shopReadWhenIdle = socket.bytesRead;
			});
			// Routes, limits and the response cache see one spelling of each address (lib/request-target.ts).
			// (After the bookkeeping above: a refused request's answer is counted too.)
			const target = normalizeRequestTarget(req.url ?? "/");
			req.url = target.url;
			if (target.host === "") return this.sendShopError(req, res, new BadRequestError("The request target names no host", "INVALID_TARGET"));
			const hostProblem = hostHeaderProblem(req.httpVersion, req.rawHeaders);
			if (hostProblem) return this.sendShopError(req, res, new BadRequestError(hostProblem, "INVALID_HOST"));
			if (target.host) req.headers.host = target.host;
			// Tokens, personal data, orders and carts (a guest's too, by X-Cart-Id): no browser or shared cache
			// keeps them, errors included. Other answers for a user or an admin: beforeCall and authenticate.
			if (/^\/api\/(auth|me|cart|orders)(\/|\?|$)/i.test(req.url ?? "")) res.setHeader("Cache-Control", "no-store");
			if (req.method === "HEAD") {
				req.method = "GET";
				req.$head = true;
			}
			// Revalidation is decided by describeBody (a GET's 200 only). moleculer-web's own check answered any
			// 2xx with a bodiless 304 for `If-None-Match: *`: a checkout charged, a login, a cart change, unseen.
			// Only when sent (few requests): a deleted key slows every later read of the headers object.
			if (req.headers["if-none-match"] !== undefined) {
				req.$ifNoneMatch = req.headers["if-none-match"];
				delete req.headers["if-none-match"];
			}
			// moleculer-web takes a client's X-Request-ID (or X-Correlation-ID) as the request's id: the log's, the
			// answer's and the trace's. One a tracer cannot take (Zipkin wants hex) or made to mislead is not kept.
			for (const name of REQUEST_ID_HEADERS) {
				const id = req.headers[name];
				if (id === undefined) continue;
				const lower = typeof id === "string" ? id.toLowerCase() : "";
				if (REQUEST_ID.test(lower)) req.headers[name] = lower;
				else delete req.headers[name];
			}
			// An OPTIONS that is no CORS preflight (a monitor, a scanner, a client asking what a path takes):
			// moleculer-web ran the path's GET action for it, counting a product view or answering /api/me.
			if (req.method === "OPTIONS" && !req.headers["access-control-request-method"]) {
				const path = (req.url ?? "").split("?")[0].replace(/(.)\/+$/, "$1");
				const allowed = this.allowedMethods(path);
				if (allowed.length) {
					res.writeHead(204, { Allow: allowed.join(", ") });
					res.end();
					return;
				}
			}
			return (ApiGateway as any).methods.httpHandler.call(this, req, res, next);
		},

		async beforeCall(ctx: Context<unknown, ShopMeta>, req: Req, res: ServerResponse) {
			// A route for users or admins answers per user, its refusals (401, 403, 429) included.
			if (needsUser(req.$action)) res.setHeader("Cache-Control", "no-store");
			ctx.meta.ip = clientAddress(req.headers["x-forwarded-for"], req.socket?.remoteAddress, this.trustProxy);
			if (req.$head) ctx.meta.headRequest = true;
			const cartId = header(req, "x-cart-id");
			if (cartId) ctx.meta.cartId = cartId;
			const key = header(req, "idempotency-key");
			if (key) ctx.meta.idempotencyKey = key;

			const limits = this.settings.shopRateLimit;
			// moleculer-web keeps alias paths without their leading slash ("auth/logout").
			const isAuth = req.$action?.rateLimit === "auth" || /^\/?auth(\/|$)/.test(String(req.$alias?.path ?? ""));
			const bucket = isAuth ? "auth" : "general";
			const limit = isAuth ? limits.auth : limits.general;
			if (limit > 0) {
				const counter = `${bucket}:${ctx.meta.ip}`;
				let hit: WindowHit;
				try {
					hit = await this.rateLimitStore.hit(counter, limits.windowMs);
				} catch (err) {
					// Redis down: the general limit fails open to this gateway's own count (a Redis blip must not
					// close the shop, and each gateway still holds its share); the auth routes' limit fails closed
					// (503), as password guessing must never go unlimited (RedisLink logs the outage once).
					if (isAuth || !(err instanceof ServiceUnavailableError)) throw err;
					hit = await this.localRateLimit.hit(counter, limits.windowMs);
				}
				const { count, resetMs } = hit;
				res.setHeader("X-RateLimit-Limit", limit);
				res.setHeader("X-RateLimit-Remaining", Math.max(0, limit - count));
				if (count > limit) throw new TooManyRequestsError(Math.max(1, Math.ceil(resetMs / 1000)));
			}
		},

		/**
		 * Bearer JWT: HS256 only, iss/aud/exp checked, and the session must be active and belong to the
		 * token's user and role (whoever holds the secret cannot sign themselves another user or admin).
		 */
		async authenticate(ctx: Context<unknown, ShopMeta>, _route: unknown, req: Req, res: ServerResponse): Promise<AuthUser | null> {
			const action = req.$action ?? {};
			const userNeeded = needsUser(action);
			// A route without a user (login, refresh) must not fail on the stale token a client keeps sending.
			if (!userNeeded && action.auth !== "optional") return null;
			const auth = header(req, "authorization");
			if (!auth) {
				if (userNeeded) throw new UnauthorizedError("Authentication required", "NO_TOKEN");
				return null;
			}
			const m = /^Bearer\s+(\S+)$/i.exec(auth);
			if (!m) throw new UnauthorizedError("Malformed Authorization header", "INVALID_TOKEN");
			let claims;
			try {
				claims = verifyAccessToken(m[1]);
			} catch (err) {
				const expired = (err as Error).name === "TokenExpiredError";
				if (!expired || !action.acceptsExpiredToken) throw new UnauthorizedError(expired ? "Token expired" : "Invalid token", expired ? "TOKEN_EXPIRED" : "INVALID_TOKEN");
				// Signing out with a token that just expired: its session ends all the same (its refresh token stayed good for 30 days).
				try {
					claims = verifyExpiredAccessToken(m[1]);
				} catch {
					throw new UnauthorizedError("Invalid token", "INVALID_TOKEN");
				}
			}
			// Cached in the users service, and dropped from the cache when the session is revoked.
			const session = await ctx.call<{ active: boolean; userId?: string; role?: string }, { sid: string }>("users.checkSession", { sid: claims.sid });
			if (!session?.active) throw new UnauthorizedError("Session revoked", "SESSION_REVOKED");
			if (session.userId !== claims.sub) throw new UnauthorizedError("Invalid token", "INVALID_TOKEN");
			if (session.role !== claims.role) {
				// A promoted user's older tokens are out of date, not forged: the client refreshes them as it does
				// expired ones and gets the new role. A token claiming more than its session holds is forged.
				if (claims.role === "customer") throw new UnauthorizedError("Your role changed: refresh the token", "TOKEN_EXPIRED");
				throw new UnauthorizedError("Invalid token", "INVALID_TOKEN");
			}
			// An optional-user route answers a signed-in user as theirs (an author sees a pending review, an
			// admin an archived product); anonymous, it stays the public answer.
			res.setHeader("Cache-Control", "no-store");
			return { id: claims.sub, role: claims.role, sid: claims.sid };
		},

		/** Action-level `auth` / `roles`: 401 without a user, 403 with the wrong role. */
		async authorize(ctx: Context<unknown, ShopMeta>, _route: unknown, req: Req) {
			const action = req.$action ?? {};
			const roles: string[] | undefined = action.roles;
			if ((action.auth === "required" || roles?.length) && !ctx.meta.user) throw new UnauthorizedError();
			if (roles?.length && !roles.includes(ctx.meta.user!.role)) throw new ForbiddenError(`Requires role: ${roles.join(", ")}`);
		},

		/**
		 * moleculer-web's own handler logs every 5xx at ERROR with its stack, once per request: during an
		 * outage (a node away, Redis down) that floods the log with 503s already reported where they are
		 * detected. A 500 is logged, with its cause, by sendShopError; a 503 only at debug.
		 */
		errorHandler(req: Req, res: ServerResponse, err: any) {
			if (err?.code === 503) this.logger.debug(`${req.method} ${loggedUrl(req)} ${requestIdOf(req)} answered 503: ${err.message}`);
			this.sendError(req, res, err);
		},

		/**
		 * moleculer-web's CORS headers, except that an origin not in CORS_ORIGINS gets none instead of a 403:
		 * CORS is the browser's to enforce (without the headers, the page's script cannot read the answer).
		 * The 403 broke a storefront served from the shop's own host (browsers send Origin on same-origin
		 * POSTs too) and apps and servers that send some Origin. With a list, every answer varies by Origin,
		 * so a CDN keeps one copy per origin.
		 */
		writeCorsHeaders(route: { cors?: { origin?: unknown } }, req: Req, res: ServerResponse, isPreFlight: boolean) {
			const origins = route.cors?.origin;
			if (origins && origins !== "*") {
				res.setHeader("Vary", varyOn(res.getHeader("Vary"), "Origin"));
				const origin = req.headers.origin;
				if (origin && !this.checkOrigin(origin, origins)) return;
			}
			(ApiGateway.methods as any).writeCorsHeaders.call(this, route, req, res, isPreFlight);
		},

		/**
		 * Whether an origin is one CORS_ORIGINS lists: the same origin (letter case aside), or one matching an
		 * entry with `*` wildcards. moleculer-web's own check took any part of an entry: with
		 * https://shop.example.com listed, https://shop.example.co (anyone's domain) was allowed.
		 */
		checkOrigin(origin: string, allowed: unknown): boolean {
			const entries: unknown[] = Array.isArray(allowed) ? allowed : [allowed];
			const wanted = origin.toLowerCase();
			return entries.some((entry) => {
				if (typeof entry !== "string") return false;
				const e = entry.trim().toLowerCase();
				return e.includes("*") ? wildcardOrigin(e).test(wanted) : e === wanted;
			});
		},

		/**
		 * moleculer-web's request and answer lines (LOGLEVEL=info), with the request id the client got in
		 * X-Request-ID (a customer's complaint quotes it) and a refusal's type; a password or token a client
		 * put in the query string (refused by requestShape, but sent) is masked.
		 */
		logRequest(req: Req) {
			if (req.$route && !req.$route.logging) return;
			const level = this.settings.logRequest;
			if (level && level in this.logger) this.logger[level as "info"](`=> ${req.method} ${loggedUrl(req)} ${requestIdOf(req)}`);
		},
		logResponse(req: Req, res: ServerResponse, _data?: unknown, errorType?: string | null) {
			if (req.$route && !req.$route.logging) return;
			const level = this.settings.logResponse;
			if (!level || !(level in this.logger)) return;
			const took = req.$startTime && process.hrtime(req.$startTime);
			const ms = took ? (took[0] * 1e3 + took[1] / 1e6).toFixed(1) : "?";
			const type = errorType ? ` ${errorType}` : "";
			this.logger[level as "info"](`<= ${res.statusCode}${type} ${req.method} ${loggedUrl(req)} ${requestIdOf(req)} ${ms} ms`);
		},

		/** moleculer-web error shape with API.md statuses; never a stack trace or an internal message. */
		sendShopError(req: Req, res: ServerResponse, raw: any) {
			let err = raw;
			// No node answers the action; or no route now, but there was one (the nodes hosting it are gone,
			// which is not "no such page").
			const noRoute = raw?.type === "NOT_FOUND" && !req.$alias;
			const unavailable = noRoute ? this.knownRoute(req) : BROKER_UNAVAILABLE_ERRORS.has(raw?.name);
			const allowed = noRoute && !unavailable ? this.allowedMethods(req.parsedUrl ?? "") : [];
			if (raw?.name === "RateLimitExceeded") err = new TooManyRequestsError(60);
			else if (unavailable) err = new ServiceUnavailableError("Service unavailable, try again");
			else if (allowed.length) {
				// The path is there, the method is not: 405 naming the ones it takes, not "no such page".
				err = new MethodNotAllowedError(req.method ?? "GET", allowed);
				res.setHeader("Allow", allowed.join(", "));
			}
			else if (raw?.code !== 503 && isRedisUnavailable(raw)) {
				// A Redis failure a service let through (e.g. from the broker's Redis cacher): 503, logged once a minute.
				err = new ServiceUnavailableError("Service unavailable, try again");
				if (Date.now() - (this.redisWarnedAt ?? 0) > 60_000) {
					this.redisWarnedAt = Date.now();
					this.logger.warn(`Redis unavailable (${raw.message}): answering 503 to ${req.method} ${loggedUrl(req)} and others like it.`);
				}
			}

			const code = typeof err?.code === "number" && err.code >= 400 && err.code < 600 ? err.code : 500;
			if (code >= 500 && code !== 503) {
				this.logger.error(`Request ${req.method} ${loggedUrl(req)} ${requestIdOf(req)} failed:`, raw);
				err = { name: "InternalServerError", message: "Internal server error", code: 500, type: "INTERNAL_ERROR" };
			}
			if (res.headersSent) return;
			// The body parser and the request checks run before moleculer-web writes the CORS headers: without
			// them here, a browser storefront could not read a 400, 413 or 415, only "failed to fetch".
			if (!res.hasHeader("Access-Control-Allow-Origin")) {
				try {
					this.writeCorsHeaders(req.$route ?? this.settings, req, res, false);
				} catch {
					/* an origin not allowed gets none */
				}
			}
			if (code === 429) res.setHeader("Retry-After", String(err.data?.retryAfter ?? 60));
			// Every 503 here is a moment's unavailability (a node restarting, a store refusing writes for a second).
			if (code === 503 && !res.hasHeader("Retry-After")) res.setHeader("Retry-After", "1");
			if (code === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="api"');
			const ctx = req.$ctx as Context<unknown, ShopMeta> | undefined;
			for (const [k, v] of Object.entries(ctx?.meta?.$responseHeaders ?? {})) res.setHeader(k, v);
			// Every key of the contract's error shape, `data` null when there is nothing to add (a client may read it unchecked).
			const body = { name: err.name, message: err.message, code, type: err.type ?? null, data: (code >= 500 && code !== 503 ? undefined : publicData(err.data)) ?? null };
			let json: string;
			try {
				json = JSON.stringify(body);
			} catch {
				// Data that cannot be written out (cyclic, too deep) must not take the error, or the process, down with it.
				json = JSON.stringify({ ...body, data: null });
			}
			res.setHeader("Content-Type", "application/json; charset=utf-8");
			// An HTTP/1.0 client keeps its connection only with a length (see describeBody).
			res.setHeader("Content-Length", Buffer.byteLength(json));
			res.writeHead(code);
			res.end(json);
			// moleculer-web logs answers only when an action gave one: a refusal or failure had a request line and no answer's.
			this.logResponse(req, res, undefined, body.type);
		},

		/**
		 * http_responses_total{code}: every answer this gateway sent, by status. What customers got, whatever
		 * failed behind it: a service whose last node is gone answers 503 without any call failing (no route,
		 * no action run), which the request metrics never see. Labels made once per status.
		 */
		responseCounter(): (status: number) => void {
			if (!this.broker.isMetricsEnabled()) return () => undefined;
			defineMetric(this.broker, { name: "http_responses_total", type: "counter", labelNames: ["code"], description: "Answers of the REST gateway, by HTTP status" });
			const metric = this.broker.metrics.getMetric("http_responses_total") as unknown as { increment(labels: Record<string, string>): void };
			const labels = new Map<number, Record<string, string>>();
			return (status) => {
				let l = labels.get(status);
				if (!l) labels.set(status, (l = { code: String(status) }));
				metric.increment(l);
			};
		},

		/**
		 * The methods a path takes, as an `Allow` header lists them: those of the routes served now and of the
		 * shop's routes (one whose service is away answers 503, not 405). None: no such path.
		 */
		allowedMethods(path: string): string[] {
			const methods = new Set(shopRouteMethods(path));
			for (const alias of this.aliases as Alias[]) if (alias.method && alias.method !== "*" && alias.match(path)) methods.add(alias.method);
			if (!methods.size) return [];
			if (methods.has("GET")) methods.add("HEAD");
			methods.add("OPTIONS");
			return HTTP_METHODS.filter((m) => methods.has(m));
		},

		/**
		 * Whether the request is for a route of the shop, or one served earlier (a plugin's), whose
		 * service has no node now: also when this gateway started after that service's last node died.
		 */
		knownRoute(req: Req): boolean {
			const url = req.parsedUrl ?? "";
			if (isShopRoute(req.method ?? "GET", url)) return true;
			for (const alias of this.routesSeen?.values() ?? []) if (alias.isMethod(req.method!) && alias.match(url)) return true;
			return false;
		},

		/**
		 * moleculer-web's own, remembering the routes it made (a route vanishes with its service's last
		 * node). Over a transporter a route it made before stays while its service has no node (one
		 * restarting): its requests wait for the node in aliasHandler instead of failing at once.
		 */
		regenerateAutoAliases(route: unknown) {
			(ApiGateway.methods as any).regenerateAutoAliases.call(this, route);
			// Runs first from moleculer-web's created(), before this service's own.
			this.routesSeen ??= new Map();
			if (this.broker.transit && cfg.serviceWaitMs > 0) {
				const present = new Set(this.aliases.map(routeKey));
				const away = [...this.routesSeen.values()].filter((alias) => alias.route === route && !present.has(routeKey(alias)));
				if (away.length) {
					this.aliases.push(...away);
					if (this.settings.optimizeOrder) (this as any).optimizeAliasesOrder();
				}
			}
			for (const alias of this.aliases) this.routesSeen.set(routeKey(alias), alias);
		},

		/**
		 * A route whose service has no node for a moment (a restart) waits for one, as calls between
		 * services do (mixins/node-away.middleware.ts), then goes on as moleculer-web's own: a 503 when
		 * none came back.
		 */
		async aliasHandler(req: Req, res: ServerResponse, alias: Alias) {
			if (alias.action && this.broker.transit && cfg.serviceWaitMs > 0 && !actionAvailable(this.broker, alias.action)) {
				await waitForAction(this.broker, alias.action, Math.min(cfg.serviceWaitMs, cfg.requestTimeout / 2));
			}
			return (ApiGateway.methods as any).aliasHandler.call(this, req, res, alias);
		},

		/**
		 * An anonymous GET of a `publicCache` action is answered from the response cache when it can be;
		 * otherwise the action is called as usual and its answer kept (see encodeResponse). Rate limits
		 * and authorization ran before this, as for any request.
		 */
		callAction(route: any, actionName: string, req: Req, res: ServerResponse, params: any, isStream: boolean) {
			const action = req.$action;
			if (action?.publicCache && req.method === "GET" && !req.headers.authorization && !req.headers["x-cart-id"]) {
				const key = req.originalUrl ?? req.url!;
				const body = this.responseCache.get(key);
				if (body) {
					const sent = this.bodyToSend(req, res, body);
					if (sent === null) {
						res.statusCode = 304;
						res.removeHeader("Content-Length");
						res.end();
					} else {
						res.setHeader("Content-Type", "application/json; charset=utf-8");
						res.end(sent);
					}
					this.logResponse(req, res);
					return Promise.resolve(true);
				}
				const tag = action.service?.name ?? actionName.split(".")[0];
				req.$responseCache = { key, tag, generation: this.responseCache.generation(tag) };
			}
			return (ApiGateway.methods as any).callAction.call(this, route, actionName, req, res, params, isStream);
		},

		/**
		 * moleculer-web's JSON encoding, with describeBody's headers; a 304 is sent without the body by
		 * moleculer-web. Decided here, not by moleculer-web's `etag` option, whose check answered 304 to any
		 * method and never to a request with `Cache-Control: no-cache`, which fetch() always adds.
		 */
		encodeResponse(req: Req, res: ServerResponse, data: unknown): string | Buffer {
			const body = this.encodeBody(req, res, data);
			const sent = this.bodyToSend(req, res, body);
			if (sent !== null) return sent;
			res.statusCode = 304;
			return body;
		},

		/**
		 * describeBody's headers for a JSON body, and the bytes to send: compressed when the client takes
		 * brotli or gzip and the body is worth it (lib/content-encoding.ts), null for a 304. Every answer says
		 * it varies by Accept-Encoding, so a shared cache never hands a compressed copy to a client that
		 * cannot read it. The ETag is the body's in every coding: weak tags may be shared (RFC 9110 8.8.1).
		 */
		bodyToSend(req: Req, res: ServerResponse, body: string | Buffer): string | Buffer | null {
			if (this.compression) res.setHeader("Vary", varyOn(res.getHeader("Vary"), "Accept-Encoding"));
			// Measured once: a one-off answer is a string, which byteLength reads through.
			const length = Buffer.byteLength(body);
			if (describeBody(req, res, body, length)) return null;
			if (!this.compression || length < COMPRESS_MIN_BYTES) return body;
			const coding = acceptedCoding(req.headers["accept-encoding"]);
			if (!coding) return body;
			const compressed = compressOnce(body, coding);
			res.setHeader("Content-Encoding", coding);
			res.setHeader("Content-Length", compressed.length);
			return compressed;
		},

		/** JSON, reusing the bytes of a cached result (see encodedResults), kept by the response cache when public. */
		encodeBody(req: Req, res: ServerResponse, data: unknown): string | Buffer {
			if (!req.$action?.cache || data === null || typeof data !== "object") return JSON.stringify(data);
			let body = encodedResults.get(data);
			if (!body) {
				body = Buffer.from(JSON.stringify(data));
				encodedResults.set(data, body);
			}
			const store = req.$responseCache;
			// Only a plain 200: an answer with headers of its own would be served without them.
			if (store && res.statusCode === 200 && !(req.$ctx?.meta as ShopMeta | undefined)?.$responseHeaders) {
				this.responseCache.set(store.key, body, store.tag, store.generation);
			}
			return body;
		},

		/** Aliases as the gateway serves them, with each action's params, auth and `openapi` properties. */
		routeInfos(): RouteInfo[] {
			const actions = new Map<string, any>();
			for (const a of this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false }) as any[]) {
				actions.set(a.name, a.action ?? a);
			}
			// An action as last seen: a route whose service has no node now keeps its parameters in the document.
			this.actionsSeen ??= new Map();
			for (const [name, def] of actions) this.actionsSeen.set(name, def);
			const aliases = new Map<string, Alias>();
			for (const a of [...this.aliases, ...(this.routesSeen?.values() ?? [])]) if (a.action && a.method && a.method !== "*") aliases.set(routeKey(a), a);
			const infos: RouteInfo[] = [...aliases.values()].map((a) => {
				const def = this.actionsSeen.get(a.action!) ?? {};
				return { method: a.method, path: a.fullPath, action: a.action, params: def.params, auth: def.auth, roles: def.roles, description: def.description, openapi: def.openapi };
			});
			// The document describes the whole contract, whichever services this gateway has met so far.
			const documented = new Set(aliases.keys());
			for (const route of SHOP_ROUTES) {
				if (documented.has(route)) continue;
				const [method, path] = route.split(" ");
				infos.push({ method, path, unreached: true, description: "Its service has not been reachable from this gateway yet: the route answers 503 until it is, and its parameters, answers and security are described from then on." });
			}
			return infos;
		},

		/**
		 * A graceful stop without resetting keep-alive connections. http.Server#close() (moleculer-web's
		 * stop) drops idle keep-alive connections at once, racing a request a client is sending on one:
		 * that client gets a reset instead of an answer. Here, from the moment the stop begins
		 * (stopAccepting, releaseConnections), the listener is closed and idle connections are let go; this,
		 * the last step (the services' requests have ended or SHUTDOWN_TIMEOUT has passed), gives what is
		 * still open up to maxMs, then cuts it. moleculer-web's own stop then finds the server closed.
		 */
		async drainConnections() {
			const server = this.server;
			const closed = this.stopAccepting();
			if (!server || !closed) return;
			// Unref'd: once the connections have closed, this timer must not hold a process that embeds the
			// broker for the rest of maxMs after its stop.
			await Promise.race([closed, delay(this.settings.shutdownDrain.maxMs, undefined, { ref: false })]);
			server.closeAllConnections();
			this.logger.info("API Gateway stopped!");
		},

		/**
		 * While a stop runs: an idle connection that was busy within shutdownDrain.quietMs (a client between
		 * two requests) gets up to idleMs to carry one more, answered with `Connection: close`; one quiet for
		 * longer is closed at once, so no request reaches services that are stopping. A request still sending
		 * its body maxMs after the stop began is cut: it never ran, and it held the whole stop (the gateway's
		 * context waited for the body, up to SHUTDOWN_TIMEOUT).
		 */
		async releaseConnections(closed: Promise<void>) {
			const { idleMs, quietMs, maxMs } = this.settings.shutdownDrain;
			let allClosed = false;
			void closed.then(() => {
				allClosed = true;
			});
			const start = Date.now();
			// The listener accepts what was already waiting in its queue for a few turns after the stop began.
			while (!allClosed && (this.connections.size || this.server?.listening)) {
				// Looked at after the event loop's I/O phase: a request that arrived while the loop was busy (a burst
				// of logins) has been read by then and counts as in flight, not as a quiet connection to drop.
				await new Promise<void>((resolve) => setImmediate(resolve));
				const now = Date.now();
				for (const socket of this.connections) {
					if (socket.shopBusy) continue;
					// Bytes of a next request (its headers still coming): not idle, unless stalled past maxMs.
					const between = socket.bytesRead === (socket.shopReadWhenIdle ?? 0);
					const quiet = now - (socket.shopLastActive ?? 0) >= quietMs;
					if ((between && (quiet || now - start >= idleMs)) || now - start >= maxMs) socket.destroy();
				}
				if (now - start >= maxMs) for (const res of this.openResponses) if (!res.req.complete) res.req.socket.destroy();
				await Promise.race([closed, delay(DRAIN_POLL_MS, undefined, { ref: false })]);
			}
		},

		/**
		 * The first step of a stop, taken as soon as the broker starts stopping (mixins/stop-notice.middleware.ts):
		 * the listener closes once the connections already waiting in its queue are accepted (new ones are then
		 * refused, and a load balancer sends them elsewhere), every answer from now on carries
		 * `Connection: close`, and idle connections are let go (releaseConnections).
		 * Returns when the server has closed, or null when it never listened. Requests already accepted go on.
		 */
		stopAccepting() {
			const server = this.server;
			if (!this.serverClosed && server?.listening) {
				this.draining = true;
				for (const res of this.openResponses) if (!res.headersSent) res.setHeader("Connection", "close");
				// Not before the connections already waiting in its queue are accepted: closing would reset them.
				this.serverClosed = closeListener(server, this.settings.shutdownDrain.idleMs);
				void this.releaseConnections(this.serverClosed).catch((err: Error) => this.logger.warn(`Letting connections go failed: ${err.message}`));
			}
			return this.serverClosed ?? null;
		},

		openApiDocument() {
			const routes = this.routeInfos();
			const key = routes.map((r) => `${r.method} ${r.path} ${r.action ?? "?"}`).join("\n");
			if (this.openApiCache?.key !== key) {
				this.openApiCache = { key, doc: buildOpenApi(routes, { title: "Moleculer Shop API", version: "1.0.0", description: "Headless e-commerce backend. Money is integer minor units." }) };
			}
			return this.openApiCache.doc;
		},
	},

	events: {
		// Sent by every service's cleanCache() (mixins/db.mixin.ts), on any node.
		"cache.clean.*"(ctx: Context) {
			this.responseCache.clean(String(ctx.eventName).slice("cache.clean.".length));
		},
		// Aliases are otherwise regenerated after a debounce; serve every local route once started.
		"$broker.started"() {
			for (const route of (this as any).routes) if (route.opts.autoAliases) (this as any).regenerateAutoAliases(route);
		},
	},

	created() {
		this.responseCache = new ResponseCache(this.settings.responseCache);
		const { trustProxy, compression } = readConfig();
		this.trustProxy = trustProxy;
		this.compression = compression;
		this.rateLimitStore = createRateLimitStore(this.settings.shopRateLimit.redisUrl, this.broker.namespace, {
			logger: this.logger,
			whileDown: "general limits count on this gateway alone and the auth routes answer 503, until it is back",
		});
		this.localRateLimit = new MemoryRateLimitStore();
		this.openResponses = new Set();
		this.countResponse = this.responseCounter();
		this.draining = false;
		this.connections = new Set();
		// The broker has begun to stop (mixins/stop-notice.middleware.ts): no new connections from now on.
		this.onStopping = () => void this.stopAccepting();
		(this.broker as unknown as { localBus: EventEmitter }).localBus.on(STOPPING_EVENT, this.onStopping);
		// moleculer-web stops the start only for a port in use, without naming PORT; any other listen error (a HOST
		// that is not this machine's, a port below 1024 without the right) left a running node with no gateway.
		// Prepended: moleculer-web's own listener exits the process for a port in use.
		this.server?.prependListener("error", (err: NodeJS.ErrnoException) => {
			this.broker.fatal(portProblem("PORT", this.settings.port, this.settings.ip, err), err, true);
		});
		// moleculer-web made the server in its own created(), which runs before this one. Node 18+ applies headersTimeout
		// only while a request's headers arrive, not between requests, so it need not exceed this.
		if (this.server) this.server.keepAliveTimeout = this.settings.keepAliveTimeout;
		// A client that asks before sending its body (Expect: 100-continue, as curl does above 1 MB) and declares
		// one over the limit gets its 413 at once, without sending it; Node said "100 Continue" to every one.
		this.server?.on("checkContinue", (req: Req, res: ServerResponse) => {
			if (declaresTooLarge(req)) {
				res.setHeader("X-Content-Type-Options", "nosniff");
				// A client may send the body without waiting for the answer.
				closeAfter(req, res);
				this.sendShopError(req, res, new PayloadTooLargeError(BODY_LIMIT));
				// Answered here, not through httpHandler.
				this.countResponse(413);
				return;
			}
			res.writeContinue();
			this.server.emit("request", req, res);
		});
		// A request without Host is answered here in the shop's error shape (httpHandler), not by Node's bare 400.
		// (Node reads the server's option on each request; its typings only know it as a createServer option.)
		if (this.server) (this.server as { requireHostHeader?: boolean }).requireHostHeader = false;
		// What Node's parser refuses (a malformed request, headers too large, a request not received in time)
		// is answered in the shop's error shape, as Node would otherwise: only when no answer has begun.
		this.server?.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: ServerResponse }) => {
			if (socket.writable && !socket._httpMessage?.headersSent) {
				socket.write(clientErrorResponse(err.code));
				this.countResponse(clientErrorStatus(err.code));
			}
			socket.destroy(err);
		});
		this.server?.on("connection", (socket: TrackedSocket) => {
			socket.shopLastActive = Date.now();
			this.connections.add(socket);
			socket.once("close", () => this.connections.delete(socket));
		});
	},

	// Runs before moleculer-web's stopped() (a service's own hook comes before its mixins' on stop).
	async stopped() {
		(this.broker as unknown as { localBus: EventEmitter }).localBus.off(STOPPING_EVENT, this.onStopping);
		await this.drainConnections();
		await Promise.all([this.rateLimitStore.close(), this.localRateLimit.close()]);
	},
};

export default ApiService;
