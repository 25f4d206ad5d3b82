/**
 * Durable domain events: `await this.publish(ctx, "order.confirmed", payload)` stores the event in
 * this service's outbox (with a sequence number) and then emits it on the broker with an `eventId`.
 * A consumer that was down catches up with `<service>.outboxSince({ after })` from its saved cursor,
 * and deduplicates by `eventId`, so nothing is lost and nothing counts twice.
 * Sequence numbers are taken and stored under one in-process lock, so this instance's events enter
 * the outbox in sequence order: a reader past N never sees N-1 appear later. (Two instances sharing
 * one MongoDB outbox can still interleave; the live event covers that gap.) With MongoDB each
 * publish takes its numbers from the counter; the embedded store has one writer, this process, so
 * it reserves them in blocks (lib/seq-blocks.ts): a counter write per block, and a gap after a restart.
 */
import type { Context, ServiceSchema, Service } from "moleculer";
import { Collection } from "./collection";
import { readConfig } from "../lib/config";
import { SeqBlocks } from "../lib/seq-blocks";

export interface OutboxEvent<P = Record<string, unknown>> {
	seq: number;
	event: string;
	payload: P & { eventId: string };
	createdAt: Date;
}

export interface Announcement {
	event: string;
	payload: Record<string, unknown>;
}

export interface OutboxThis {
	outbox: Collection;
	outboxCounters: Collection;
	outboxSeqs: SeqBlocks;
	/** Takes the outbox's lock: what runs under it runs alone, in call order. */
	outboxLock: <T>(fn: () => Promise<T>) => Promise<T>;
	publish(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string>;
	/** Several events with consecutive numbers (at most one counter update) and one insert; emitted in order. Returns their event ids. */
	publishAll(ctx: Context | null, events: Announcement[]): Promise<string[]>;
	/** Whether `event` about `about` (payload fields) was published from `since` on: a redo after a crash publishes only what is missing. */
	published(event: string, about: Record<string, unknown>, since: Date): Promise<boolean>;
	/**
	 * Blanks `fields` of the kept events about `about` (payload fields) and rewrites the embedded file:
	 * an account's erasure. A consumer that reads them later finds no one to write to.
	 */
	scrubOutbox(about: Record<string, unknown>, fields: string[]): Promise<number>;
}

/** Runs the functions given to it one at a time, in call order, whatever each one's outcome. */
export function serialLock(): OutboxThis["outboxLock"] {
	let tail: Promise<unknown> = Promise.resolve();
	return <T>(fn: () => Promise<T>) => {
		const run = tail.then(fn, fn);
		tail = run.catch(() => undefined);
		return run;
	};
}

/** Days an event stays available for catch-up. */
const RETENTION_SECONDS = 7 * 24 * 3600;
/** Sequence numbers reserved per counter write in the embedded store. */
const EMBEDDED_SEQ_BLOCK = 1000;

export function OutboxMixin(serviceName: string): Partial<ServiceSchema<any, any, any, any>> {
	return {
		actions: {
			outboxSince: {
				visibility: "public",
				params: {
					after: { type: "number", integer: true, min: 0, convert: true },
					limit: { type: "number", integer: true, min: 1, max: 1000, default: 200, convert: true },
					events: { type: "array", items: "string", optional: true },
				},
				async handler(this: Service & OutboxThis, ctx: Context<{ after: number; limit: number; events?: string[] }>) {
					const query: Record<string, unknown> = { seq: { $gt: ctx.params.after } };
					if (ctx.params.events?.length) query.event = { $in: ctx.params.events };
					const rows = await this.outbox.find(query, { sort: { seq: 1 }, limit: ctx.params.limit });
					const events = rows.map(({ seq, event, payload, createdAt }) => ({ seq, event, payload, createdAt }));
					return { events, last: events.length ? events[events.length - 1].seq : ctx.params.after };
				},
			},
		},
		methods: {
			async publish(this: Service & OutboxThis, ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string> {
				const [eventId] = await this.publishAll(ctx, [{ event, payload }]);
				return eventId;
			},

			async published(this: Service & OutboxThis, event: string, about: Record<string, unknown>, since: Date): Promise<boolean> {
				const fields = Object.fromEntries(Object.entries(about).map(([k, v]) => [`payload.${k}`, v]));
				// Bounded by `since` (indexed), so it reads the events of that stretch only.
				return !!(await this.outbox.findOne({ event, ...fields, createdAt: { $gte: new Date(since) } }));
			},

			async scrubOutbox(this: Service & OutboxThis, about: Record<string, unknown>, fields: string[]): Promise<number> {
				const query = Object.fromEntries(Object.entries(about).map(([k, v]) => [`payload.${k}`, v]));
				const scrubbed = await this.outbox.updateMany(query, { $unset: Object.fromEntries(fields.map((f) => [`payload.${f}`, true])) });
				if (scrubbed) await this.outbox.compact();
				return scrubbed;
			},

			async publishAll(this: Service & OutboxThis, ctx: Context | null, events: Announcement[]): Promise<string[]> {
				if (!events.length) return [];
				const rows = await this.outboxLock(async () => {
					const first = await this.outboxSeqs.take(events.length);
					const createdAt = new Date();
					const stored = events.map(({ event, payload }, i) => ({ seq: first + i, event, payload: { ...payload, eventId: `${serviceName}:${first + i}` }, createdAt }));
					await this.outbox.insertMany(stored);
					return stored;
				});
				for (const { event, payload } of rows) {
					if (ctx) await ctx.emit(event, payload);
					else await this.broker.emit(event, payload);
				}
				return rows.map((r) => r.payload.eventId);
			},
		},
		created(this: Service & OutboxThis) {
			const cfg = readConfig();
			const opts = { mongoUri: cfg.mongoUri, dataDir: cfg.isTest ? undefined : cfg.dataDir };
			this.outbox = new Collection(`${serviceName}_outbox`, {
				fields: { seq: Number, event: String, payload: Object, createdAt: Date },
				indexes: [{ fields: { seq: 1 }, unique: true }, { fields: { createdAt: 1 }, expireAfterSeconds: RETENTION_SECONDS }],
				loadInBackground: true,
			}, opts);
			this.outboxCounters = new Collection(`${serviceName}_outbox_counters`, { fields: { value: Number } }, opts);
			this.outboxLock = serialLock();
			// The counter is one atomic upsert-increment, so sequence numbers never repeat.
			const reserve = async (n: number) => (await this.outboxCounters.updateOne({ id: "seq" }, { $inc: { value: n } }, { upsert: true }))!.value as number;
			this.outboxSeqs = new SeqBlocks(reserve, opts.mongoUri ? 1 : EMBEDDED_SEQ_BLOCK);
		},
		async started(this: Service & OutboxThis) {
			await Promise.all([this.outbox.connect(), this.outboxCounters.connect()]);
		},
		async stopped(this: Service & OutboxThis) {
			await Promise.all([this.outbox.disconnect(), this.outboxCounters.disconnect()]);
		},
	};
}
