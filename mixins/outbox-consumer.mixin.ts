/**
 * The consuming side of the outbox (mixins/outbox.mixin.ts): durable events emitted while this
 * service was down, or lost on the way, are handled once it is back.
 *
 *   mixins: [
 *     OutboxConsumerMixin({
 *       cursors: "analytics_cursors",             // this service's collection: one cursor per source
 *       sources: { orders: ["order.confirmed"], payments: ["payment.refunded"] },
 *       handler: "ingest",                        // method (event, payload, ctx, emittedAt): Promise<void>
 *       settle: "storeIngested",                  // optional method, awaited before a cursor is saved
 *     }),
 *     DbMixin(...), HealthMixin,
 *   ]
 *
 * - Live: the mixin subscribes to every listed event (the service does not declare them itself)
 *   and passes it to `handler` with its ctx. A failure is only logged: the event stays in its
 *   outbox and the catch-up handles it again.
 * - Catch-up: per source, the events after the saved cursor are read with `<source>.outboxSince`,
 *   page by page in order, and passed to the same `handler` with ctx null and the time the event
 *   was stored (live events: undefined, it is now). It runs when a service appears
 *   (`$services.changed`, which the broker also broadcasts once this service is registered, i.e.
 *   after all its started hooks), every `settings.catchUpIntervalMs`, and `settings.catchUpDelayMs`
 *   after a live event past the cursor. A source that is not running is skipped; a failing one is
 *   read again on the next occasion. A handler that throws holds its source at that event until it
 *   succeeds: nothing is skipped.
 * - The cursor only moves forward and is saved after the events up to it were handled (and, with
 *   `settle`, stored: for a handler that only queues them).
 * - A live event the handler took is not handed to it again by this instance's catch-up, which
 *   only moves the cursor past it (after `settle`; if that throws, the events are read again).
 *   An event can still reach `handler` more than once (a replay, two instances, a race between
 *   the live event and a read): the handler must be idempotent by `payload.eventId`.
 *
 * List it before DbMixin: Moleculer stops mixins in list order, so a running catch-up ends before
 * the service's collections close.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { Collection } from "./collection";
import { readConfig } from "../lib/config";

export interface OutboxConsumerOptions {
	/** Name of the cursor collection (documents `{id: source, seq}`); it carries the service's name. */
	cursors: string;
	/** Per source service (the one whose outbox keeps them), the durable events to handle. */
	sources: Record<string, string[]>;
	/** Method handling one event: `(event, payload, ctx, emittedAt)`; caught up, ctx is null and emittedAt the outbox's time. */
	handler: string;
	/** Method that resolves once what `handler` accepted is stored, and throws when some was not. */
	settle?: string;
	/** Events read per `outboxSince` call. */
	pageSize?: number;
}

export interface OutboxConsumerSettings {
	/** How often every source's outbox is read, whatever the live events said. */
	catchUpIntervalMs: number;
	/** Delay between a live event (or a service appearing) and the outbox read; bursts share one read. */
	catchUpDelayMs: number;
}

export interface OutboxConsumerThis {
	outboxCursors: Collection;
	/** Reads every source up to its end; resolves when done (failures are logged, not thrown). */
	catchUpAll(): Promise<void>;
	catchUp(source: string): Promise<void>;
	scheduleCatchUp(delayMs?: number): void;
}

interface ConsumerState {
	/** Highest cursor seen per source: a live event beyond it asks for a read. */
	known: Map<string, number>;
	running: Map<string, Promise<void>>;
	/** Per source, sequence numbers past the cursor that the handler took live: the catch-up skips them. */
	handledLive: Map<string, Set<number>>;
	again: Set<string>;
	timer: NodeJS.Timeout | null;
	interval: NodeJS.Timeout | null;
	stopping: boolean;
}

interface OutboxPage {
	events: Array<{ seq: number; event: string; payload: Record<string, unknown> & { eventId: string }; createdAt: Date | string }>;
	last: number;
}

type ConsumerThis = Service<OutboxConsumerSettings> & OutboxConsumerThis & { outboxConsumer: ConsumerState; [method: string]: any };

/** The outbox sequence number in an event id of `source` ("orders:42" → 42), or null. */
export function outboxSeqOf(source: string, eventId: unknown): number | null {
	if (typeof eventId !== "string") return null;
	const m = /^(.+):(\d+)$/.exec(eventId);
	return m && m[1] === source ? Number(m[2]) : null;
}

/** Live-handled events remembered per source at most: beyond it, the catch-up hands events over again. */
const MAX_HANDLED_LIVE = 10_000;

export function OutboxConsumerMixin(opts: OutboxConsumerOptions): Partial<ServiceSchema<any, any, any, any>> {
	const pageSize = opts.pageSize ?? 200;
	const sourceOf = new Map<string, string>();
	for (const [source, events] of Object.entries(opts.sources)) for (const event of events) if (!sourceOf.has(event)) sourceOf.set(event, source);

	async function onLiveEvent(this: ConsumerThis, ctx: Context<Record<string, unknown>>) {
		const event = ctx.eventName!;
		const source = sourceOf.get(event)!;
		const seq = outboxSeqOf(source, ctx.params?.eventId);
		const state = this.outboxConsumer;
		try {
			await this[opts.handler](event, ctx.params, ctx);
			const live = state.handledLive.get(source)!;
			if (seq != null && seq > (state.known.get(source) ?? 0) && live.size < MAX_HANDLED_LIVE) live.add(seq);
		} catch (err) {
			this.logger.warn(`Handling ${event} failed, the catch-up will retry: ${(err as Error).message}`);
		}
		// Past our cursor: read soon, to move the cursor past it and fetch anything missed before it.
		if (seq != null && seq > (state.known.get(source) ?? 0)) this.scheduleCatchUp();
	}

	return {
		settings: { catchUpIntervalMs: 30_000, catchUpDelayMs: 500 },

		events: {
			...Object.fromEntries([...sourceOf.keys()].map((event) => [event, onLiveEvent])),
			// A source (re)appeared, or this service was just registered: read what the outboxes kept.
			"$services.changed"(this: ConsumerThis) {
				this.scheduleCatchUp();
			},
		},

		methods: {
			async catchUpAll(this: ConsumerThis) {
				// One source after another, in the order listed: after an outage the customer hears of an
				// order (orders) before its refund (payments), not as two reads side by side happen to end.
				for (const source of Object.keys(opts.sources)) await this.catchUp(source);
			},

			catchUp(this: ConsumerThis, source: string): Promise<void> {
				const state = this.outboxConsumer;
				const running = state.running.get(source);
				if (running) {
					// Events may have arrived after this run read the outbox: read once more when it ends.
					state.again.add(source);
					return running;
				}
				const run = readSource(this, source)
					.catch((err) => {
						if (!state.stopping) this.logger.warn(`Catching up with ${source} failed, will retry: ${(err as Error).message}`);
					})
					.finally(() => {
						state.running.delete(source);
						if (state.again.delete(source) && !state.stopping) void this.catchUp(source);
					});
				state.running.set(source, run);
				return run;
			},

			scheduleCatchUp(this: ConsumerThis, delayMs: number = this.settings.catchUpDelayMs) {
				const state = this.outboxConsumer;
				if (state.timer || state.stopping) return;
				state.timer = setTimeout(() => {
					state.timer = null;
					void this.catchUpAll();
				}, delayMs);
				state.timer.unref();
			},
		},

		created(this: ConsumerThis) {
			for (const method of [opts.handler, opts.settle]) {
				if (method && typeof this[method] !== "function") throw new Error(`OutboxConsumerMixin: ${this.name} has no method "${method}"`);
			}
			const cfg = readConfig();
			this.outboxCursors = new Collection(opts.cursors, { fields: { seq: Number, updatedAt: Date } }, { mongoUri: cfg.mongoUri, dataDir: cfg.isTest ? undefined : cfg.dataDir });
			const handledLive = new Map(Object.keys(opts.sources).map((source) => [source, new Set<number>()]));
			this.outboxConsumer = { known: new Map(), running: new Map(), handledLive, again: new Set(), timer: null, interval: null, stopping: false };
		},

		async started(this: ConsumerThis) {
			const state = this.outboxConsumer;
			state.stopping = false;
			await this.outboxCursors.connect();
			// The first read comes with the `$services.changed` of this service's own registration.
			state.interval = setInterval(() => void this.catchUpAll(), this.settings.catchUpIntervalMs);
			state.interval.unref();
		},

		async stopped(this: ConsumerThis) {
			const state = this.outboxConsumer;
			state.stopping = true;
			if (state.timer) clearTimeout(state.timer);
			if (state.interval) clearInterval(state.interval);
			state.timer = state.interval = null;
			// A read in progress stops after its current event and saves how far it got.
			await Promise.allSettled([...state.running.values()]);
			await this.outboxCursors.disconnect();
		},
	};

	/** Handles the source's events after the saved cursor, in order, saving the cursor after each page. */
	async function readSource(svc: ConsumerThis, source: string): Promise<void> {
		const state = svc.outboxConsumer;
		if (state.stopping || !svc.broker.registry.actions.isAvailable(`${source}.outboxSince`)) return;
		let cursor = (await svc.outboxCursors.findById(source))?.seq ?? 0;
		remember(state, source, cursor);
		const live = state.handledLive.get(source)!;
		while (!state.stopping) {
			// Not retried here: the next occasion reads again from the same cursor.
			const page: OutboxPage = await svc.broker.call(`${source}.outboxSince`, { after: cursor, events: opts.sources[source], limit: pageSize }, { retries: 0 });
			let handledUpTo = cursor;
			let failure: Error | null = null;
			for (const e of page.events) {
				if (state.stopping) break;
				if (live.has(e.seq)) {
					handledUpTo = e.seq;
					continue;
				}
				try {
					// Through a transporter the date arrives as a string.
					await svc[opts.handler](e.event, e.payload, null, new Date(e.createdAt));
				} catch (err) {
					failure = new Error(`${e.event} ${e.payload?.eventId ?? `#${e.seq}`}: ${(err as Error).message}`);
					break;
				}
				handledUpTo = e.seq;
			}
			if (handledUpTo > cursor) {
				if (opts.settle) {
					try {
						await svc[opts.settle]();
					} catch (err) {
						// What was taken live may not be stored either: the next read hands it over again.
						live.clear();
						throw err;
					}
				}
				// $max: an older, slower read (another instance) never moves the cursor back.
				const saved = await svc.outboxCursors.updateOne({ id: source }, { $max: { seq: handledUpTo }, $set: { updatedAt: new Date() } }, { upsert: true });
				cursor = saved?.seq ?? handledUpTo;
				remember(state, source, cursor);
				for (const seq of live) if (seq <= cursor) live.delete(seq);
			}
			if (failure) throw failure;
			if (page.events.length < pageSize) return;
		}
	}

	function remember(state: ConsumerState, source: string, seq: number) {
		state.known.set(source, Math.max(seq, state.known.get(source) ?? 0));
	}
}
