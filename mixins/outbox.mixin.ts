/**
 * Durable domain events: `await this.publish(ctx, "order.confirmed", payload)` stores the event in
 * this service's outbox (with a sequence number) and then emits it on the broker with an `eventId`.
 * A consumer that was down catches up with `<service>.outboxSince({ after })` from its saved cursor,
 * and deduplicates by `eventId`, so nothing is lost and nothing counts twice.
 */
import type { Context, ServiceSchema, Service } from "moleculer";
import { Collection } from "./collection";
import { readConfig } from "../lib/config";

export interface OutboxEvent<P = Record<string, unknown>> {
	seq: number;
	event: string;
	payload: P & { eventId: string };
	createdAt: Date;
}

export interface OutboxThis {
	outbox: Collection;
	outboxCounters: Collection;
	publish(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string>;
}

/** Days an event stays available for catch-up. */
const RETENTION_SECONDS = 7 * 24 * 3600;

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
				// The counter is one atomic upsert-increment, so sequence numbers never repeat.
				const counter = await this.outboxCounters.updateOne({ id: "seq" }, { $inc: { value: 1 } }, { upsert: true });
				const seq = counter!.value as number;
				const eventId = `${serviceName}:${seq}`;
				const full = { ...payload, eventId };
				await this.outbox.insert({ seq, event, payload: full, createdAt: new Date() });
				if (ctx) await ctx.emit(event, full);
				else await this.broker.emit(event, full);
				return eventId;
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
		},
		async started(this: Service & OutboxThis) {
			await Promise.all([this.outbox.connect(), this.outboxCounters.connect()]);
		},
		async stopped(this: Service & OutboxThis) {
			await Promise.all([this.outbox.disconnect(), this.outboxCounters.disconnect()]);
		},
	};
}
