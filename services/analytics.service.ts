/**
 * Sales, top products and funnel reports from broker events.
 *
 * Every consumed event goes through a pipeline of bounded queues (lib/pipeline.ts):
 *   ingest (the event handler, which awaits while the first queue is full)
 *   → validate/enrich (payload check, hourly bucket, claim the eventId once)
 *   → aggregate (a batch becomes one `$inc` per hourly counter)
 *   → store (atomic upsert-increments, then the Prometheus business metrics).
 * Revenue rules are in lib/analytics-events.ts; reports are assembled in lib/analytics-reports.ts.
 * Order and payment events also come from their outboxes (mixins/outbox-consumer.mixin.ts), so the
 * ones emitted while analytics was down are counted when it starts; the eventId claim counts each once.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type DbServiceThis } from "../mixins/db.mixin";
import { newId } from "../mixins/collection";
import { OutboxConsumerMixin } from "../mixins/outbox-consumer.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import type { ShopMeta } from "../mixins/types";
import { Pipeline, type PipelineStats } from "../lib/pipeline";
import { combineIncrements, counterId, incrementsFor, normaliseEvent, type AnalyticsEvent, type Increment } from "../lib/analytics-events";
import { funnelReport, salesReport, topProductsReport, type HourlyCounter } from "../lib/analytics-reports";
import { hourRange, INTERVALS, resolveRange, type Interval } from "../lib/time-buckets";
import { invalidField, isDuplicate } from "../lib/errors";

interface RawEvent {
	name: string;
	payload: unknown;
	receivedAt: Date;
}

interface AggregatedBatch {
	increments: Increment[];
	events: AnalyticsEvent[];
}

interface AnalyticsSettings {
	rest: string;
	pipeline: {
		/** Items each queue holds at most: the bound on what a burst can pile up in memory. */
		capacity: number;
		validateBatch: number;
		validateConcurrency: number;
		/**
		 * How long events wait for others before they are claimed and counted: one checkout moves seven
		 * counters, and events counted together share one upsert per counter. Events not yet claimed
		 * are re-read from their outbox after a crash, so the wait loses nothing durable.
		 */
		lingerMs: number;
		aggregateBatch: number;
	};
}

interface Counts {
	received: number;
	rejected: number;
	duplicates: number;
	counted: number;
}

interface AnalyticsVars extends DbServiceThis {
	pipeline: Pipeline<RawEvent>;
	counts: Counts;
	/** Items lost by a failed stage, as of the last catch-up page that was stored. */
	failuresSettled: number;
}

interface AnalyticsMethods {
	ingest(name: string, payload: unknown, ctx?: Context | null, emittedAt?: Date): Promise<void>;
	storeIngested(): Promise<void>;
	validateAndClaim(batch: RawEvent[]): Promise<AnalyticsEvent[]>;
	claim(events: AnalyticsEvent[]): Promise<AnalyticsEvent[]>;
	store(batch: AggregatedBatch[]): Promise<AggregatedBatch[]>;
	addToCounter(inc: Increment): Promise<void>;
	recordMetrics(events: AnalyticsEvent[]): void;
	registerMetrics(): void;
	readCounters(metrics: string[], from: Date, to: Date): Promise<HourlyCounter[]>;
	stats(): PipelineStats & Counts;
}

type AnalyticsThis = Service<AnalyticsSettings> & AnalyticsVars & AnalyticsMethods;
type RangeParams = { from?: Date; to?: Date };

/** Processed event ids are kept longer than producers keep events for replay (the outbox: 7 days). */
const DEDUPE_RETENTION_SECONDS = 14 * 24 * 3600;
const CHECKOUT_BUCKETS_SECONDS = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120];

const rangeParams = {
	from: { type: "date", convert: true, optional: true },
	to: { type: "date", convert: true, optional: true },
} as const;

function ingestEvent(this: AnalyticsThis, ctx: Context) {
	return this.ingest(ctx.eventName!, ctx.params);
}

function rangeOf(params: RangeParams): { from: Date; to: Date } {
	const range = resolveRange(params.from, params.to);
	if (!range.ok) throw invalidField(range.field, range.message);
	return range;
}

async function withRetry<T>(attempts: number, fn: () => Promise<T>): Promise<T> {
	for (let i = 1; ; i++) {
		try {
			return await fn();
		} catch (err) {
			// A duplicate is an answer, not a failure: only errors of the store itself are retried.
			if (i >= attempts || isDuplicate(err)) throw err;
			await new Promise((r) => setTimeout(r, 50 * 2 ** i));
		}
	}
}

const AnalyticsService: ServiceSchema<AnalyticsSettings, AnalyticsMethods, AnalyticsVars> = {
	name: "analytics",
	mixins: [
		// Before DbMixin: the catch-up stops before the collections close.
		OutboxConsumerMixin({
			cursors: "analytics_cursors",
			sources: { orders: ["order.created", "order.confirmed", "order.cancelled", "checkout.failed"], payments: ["payment.refunded", "payment.failed"] },
			handler: "ingest",
			settle: "storeIngested",
		}),
		DbMixin("analytics", {
			// One counter per hour, metric and key (currency, product, status|currency, funnel step, failure reason).
			hourly: {
				fields: {
					bucket: { type: String, required: true },
					metric: { type: String, required: true },
					key: { type: String, required: true },
					value: { type: Number, default: 0 },
					status: String,
					currency: String,
					productId: String,
					name: String,
					step: String,
					reason: String,
					updatedAt: Date,
				},
				indexes: [{ fields: { bucket: 1, metric: 1, key: 1 }, unique: true }],
			},
			processed_events: {
				// `claim` names the batch that claimed it: after an insert that stopped half-way, our own rows are told from others'.
				fields: { eventId: { type: String, required: true }, type: String, processedAt: Date, claim: String },
				indexes: [{ fields: { eventId: 1 }, unique: true }, { fields: { processedAt: 1 }, expireAfterSeconds: DEDUPE_RETENTION_SECONDS }],
			},
		}),
		HealthMixin,
	],
	settings: {
		rest: "/",
		pipeline: { capacity: 1000, validateBatch: 50, validateConcurrency: 1, lingerMs: 100, aggregateBatch: 500 },
	},

	// Order and payment events reach `ingest` through the outbox consumer mixin.
	events: {
		"product.viewed": ingestEvent,
		"cart.item_added": ingestEvent,
	},

	actions: {
		// Only buckets with activity are listed; weeks start on Monday (UTC).
		sales: {
			rest: "GET /analytics/sales",
			roles: ["admin"],
			params: { ...rangeParams, interval: { type: "enum", values: [...INTERVALS], default: "day" }, $$strict: "remove" },
			async handler(this: AnalyticsThis, ctx: Context<RangeParams & { interval: Interval }, ShopMeta>) {
				const { from, to } = rangeOf(ctx.params);
				return salesReport(await this.readCounters(["orders", "revenue", "refunds"], from, to), ctx.params.interval);
			},
		},
		// Product revenue is line totals net of their share of the order discount.
		topProducts: {
			rest: "GET /analytics/top-products",
			roles: ["admin"],
			params: { ...rangeParams, limit: { type: "number", integer: true, min: 1, max: 100, default: 10, convert: true }, $$strict: "remove" },
			async handler(this: AnalyticsThis, ctx: Context<RangeParams & { limit: number }, ShopMeta>) {
				const { from, to } = rangeOf(ctx.params);
				return topProductsReport(await this.readCounters(["units", "product_revenue"], from, to), ctx.params.limit);
			},
		},
		funnel: {
			rest: "GET /analytics/funnel",
			roles: ["admin"],
			params: { ...rangeParams, $$strict: "remove" },
			async handler(this: AnalyticsThis, ctx: Context<RangeParams, ShopMeta>) {
				const { from, to } = rangeOf(ctx.params);
				return funnelReport(await this.readCounters(["funnel", "checkout_failures"], from, to));
			},
		},
		/** Queue lengths and their high-water marks, and what was counted, rejected or deduplicated. */
		pipelineStats: {
			visibility: "public",
			params: {},
			handler(this: AnalyticsThis) {
				return this.stats();
			},
		},
		/** Waits until every event received so far is stored (tests, graceful hand-over). */
		flush: {
			visibility: "public",
			params: {},
			async handler(this: AnalyticsThis) {
				await this.pipeline.drain();
				return this.stats();
			},
		},
	},

	methods: {
		/** Live, or caught up from an outbox: then the outbox's time dates an event that has no occurredAt. */
		async ingest(name: string, payload: unknown, _ctx?: Context | null, emittedAt?: Date) {
			this.counts.received++;
			try {
				await this.pipeline.push({ name, payload, receivedAt: emittedAt ?? new Date() });
			} catch (err) {
				this.logger.warn(`Event ${name} not counted: ${(err as Error).message}`);
			}
		},

		/** A catch-up page goes through the whole pipeline before its cursor is saved; a stage that lost items has it read again. */
		async storeIngested() {
			if (!this.pipeline.stats().running) throw new Error("the analytics pipeline is stopped");
			await this.pipeline.drain();
			const { running, stages } = this.pipeline.stats();
			const failures = stages.reduce((n, s) => n + s.failed, 0);
			const lost = failures - this.failuresSettled;
			this.failuresSettled = failures;
			if (!running) throw new Error("the analytics pipeline stopped");
			if (lost > 0) throw new Error(`${lost} event(s) were not stored`);
		},

		async validateAndClaim(batch: RawEvent[]) {
			const fresh = new Map<string, AnalyticsEvent>();
			for (const raw of batch) {
				const res = normaliseEvent(raw.name, raw.payload, raw.receivedAt);
				if (!res.ok) {
					this.counts.rejected++;
					this.logger.warn(`Rejected ${raw.name} event ${res.eventId ?? "(no eventId)"}: ${res.reason}`);
				} else if (fresh.has(res.event.eventId)) this.counts.duplicates++;
				else fresh.set(res.event.eventId, res.event);
			}
			return this.claim([...fresh.values()]);
		},

		/**
		 * The unique eventId is the claim: of two deliveries of one event, only one insert succeeds. A
		 * batch is claimed with one insert; when some of it was claimed before (a replay), event by event.
		 */
		async claim(events: AnalyticsEvent[]) {
			if (!events.length) return [];
			const claim = newId();
			const processedAt = new Date();
			const row = (event: AnalyticsEvent) => ({ eventId: event.eventId, type: event.type, processedAt, claim });
			try {
				await withRetry(3, () => this.db.processed_events.insertMany(events.map(row)));
				return events;
			} catch (err: any) {
				if (!isDuplicate(err)) throw err;
			}
			const claimed = await Promise.all(
				events.map(async (event) => {
					try {
						await withRetry(3, () => this.db.processed_events.insert(row(event)));
						return event;
					} catch (err: any) {
						if (!isDuplicate(err)) throw err;
						// Ours when the batch insert stored it before it stopped (MongoDB inserts in order up to the duplicate).
						if ((await this.db.processed_events.findOne({ eventId: event.eventId }))?.claim === claim) return event;
						this.counts.duplicates++;
						return null;
					}
				}),
			);
			return claimed.filter((e): e is AnalyticsEvent => e !== null);
		},

		/** Batches that waited together are written together: one upsert per bucket for all of them. */
		async store(batches: AggregatedBatch[]) {
			const increments = combineIncrements(batches.flatMap((b) => b.increments));
			// Retried because the claim is already made: a lost write would be a lost count.
			await Promise.all(increments.map((inc) => withRetry(3, () => this.addToCounter(inc))));
			for (const { events } of batches) {
				this.counts.counted += events.length;
				this.recordMetrics(events);
			}
			return [];
		},

		async addToCounter(inc: Increment) {
			const counter = { bucket: inc.bucket, metric: inc.metric, key: inc.key };
			const update = { $inc: { value: inc.value }, $set: { ...inc.dims, updatedAt: new Date() } };
			try {
				await this.db.hourly.updateOne({ id: counterId(inc), ...counter }, update, { upsert: true });
			} catch (err: any) {
				// A counter stored before counters had their id: found by its fields.
				if (!isDuplicate(err)) throw err;
				await this.db.hourly.updateOne(counter, update, { upsert: true });
			}
		},

		registerMetrics() {
			if (!this.broker.isMetricsEnabled()) return;
			const metrics = this.broker.metrics;
			const define = (opts: any) => {
				if (!metrics.hasMetric(opts.name)) metrics.register(opts);
			};
			define({ name: "orders_total", type: "counter", labelNames: ["status"], description: "Orders by the status they reached" });
			// Counters only go up, so refunds have their own: net revenue = revenue - refunded.
			define({ name: "revenue_cents_total", type: "counter", labelNames: ["currency"], unit: "cents", description: "Paid order totals, shipping included" });
			define({ name: "refunded_cents_total", type: "counter", labelNames: ["currency"], unit: "cents", description: "Refunded amounts of paid orders (not of payments that came after their order was cancelled)" });
			define({ name: "payment_failures_total", type: "counter", description: "Declined or failed payments" });
			define({ name: "checkout_failures_total", type: "counter", labelNames: ["reason"], description: "Started checkouts that did not go through, by reason" });
			define({
				name: "checkout_duration_seconds",
				type: "histogram",
				unit: "seconds",
				buckets: CHECKOUT_BUCKETS_SECONDS,
				description: "From checkout start to a confirmed order (checkoutDurationMs of order.confirmed)",
			});
		},

		recordMetrics(events: AnalyticsEvent[]) {
			if (!this.broker.isMetricsEnabled()) return;
			const m = this.broker.metrics;
			for (const e of events) {
				switch (e.type) {
					case "order.created":
					case "order.cancelled":
						m.increment("orders_total", { status: e.status });
						break;
					case "order.confirmed":
						m.increment("orders_total", { status: e.status });
						m.increment("revenue_cents_total", { currency: e.currency }, e.total);
						if (e.checkoutDurationMs !== undefined) m.observe("checkout_duration_seconds", e.checkoutDurationMs / 1000);
						break;
					case "payment.refunded":
						if (e.sale) m.increment("refunded_cents_total", { currency: e.currency }, e.amount);
						break;
					case "payment.failed":
						m.increment("payment_failures_total");
						break;
					case "checkout.failed":
						m.increment("checkout_failures_total", { reason: e.reason });
						break;
				}
			}
		},

		async readCounters(metrics: string[], from: Date, to: Date) {
			const { fromKey, toKey } = hourRange(from, to);
			return (await this.db.hourly.find({ metric: { $in: metrics }, bucket: { $gte: fromKey, $lt: toKey } })) as unknown as HourlyCounter[];
		},

		stats() {
			return { ...this.pipeline.stats(), ...this.counts };
		},
	},

	created(this: AnalyticsThis) {
		const opts = this.settings.pipeline;
		this.counts = { received: 0, rejected: 0, duplicates: 0, counted: 0 };
		this.failuresSettled = 0;
		// Each item of the store stage is a whole aggregated batch, so a few of them are plenty.
		const storeCapacity = Math.max(1, Math.ceil(opts.capacity / opts.aggregateBatch));
		this.pipeline = new Pipeline<RawEvent>(
			[
				{ name: "validate", batchSize: opts.validateBatch, concurrency: opts.validateConcurrency, lingerMs: opts.lingerMs, handle: (batch: RawEvent[]) => this.validateAndClaim(batch) },
				{
					name: "aggregate",
					batchSize: opts.aggregateBatch,
					// Summed per counter in `store`, with whatever other batches wait there.
					handle: (events: AnalyticsEvent[]) => [{ increments: events.flatMap(incrementsFor), events }],
				},
				{ name: "store", capacity: storeCapacity, batchSize: storeCapacity, handle: (batch: AggregatedBatch[]) => this.store(batch) },
			],
			{
				capacity: opts.capacity,
				onError: (err, stage, batch) => this.logger.error(`Analytics ${stage} stage dropped ${batch.length} item(s):`, err),
			},
		);
		this.registerMetrics();
	},

	started(this: AnalyticsThis) {
		this.pipeline.start();
	},

	async stopped(this: AnalyticsThis) {
		// Runs before the db mixin disconnects: what is queued is still stored.
		await this.pipeline.stop();
	},
};

export default AnalyticsService;
