/**
 * Sales, top products and funnel reports from broker events.
 *
 * Every consumed event goes through a pipeline of bounded queues (lib/pipeline.ts):
 *   ingest (the event handler, which awaits while the first queue is full)
 *   → validate (payload check, hourly bucket, the counters it moves)
 *   → count, one batch at a time: claim the events (one insert; each claim row carries its event's
 *     increments and is marked pending), add the batch to every counter it moves (one conditional
 *     upsert per counter, which also records the batch on it), then mark the claim rows counted
 *     (one update), then the Prometheus business metrics.
 * A batch stopped anywhere (a kill, a failed write) is finished from its pending claim rows: by
 * this run before its next batch, and by the sweep at start and every `recoverBatchesEveryMs` once
 * the run that claimed it is over. A counter already carrying the batch is left alone
 * (lib/analytics-events.ts, "counting each batch once"), so each event is counted once in every counter.
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
import {
	combineIncrements,
	counterId,
	checkoutFailureOf,
	counterUpdate,
	incrementsFor,
	LIVE_ONLY_EVENTS,
	normaliseEvent,
	notCountedYet,
	unfinishedBatches,
	type AnalyticsEvent,
	type BatchTag,
	type Increment,
	type PendingClaim,
} from "../lib/analytics-events";
import { funnelReport, salesReport, topProductsReport, withCatalogNames, type HourlyCounter } from "../lib/analytics-reports";
import { hourRange, INTERVALS, resolveRange, type Interval } from "../lib/time-buckets";
import { invalidField, isDuplicate } from "../lib/errors";
import { currencyFilterRule } from "../lib/catalog-rules";
import { brokerRunView, runnerIsGone, type SagaRunner as NodeRun } from "../lib/checkout-recovery";
import { isoDateRule } from "../lib/param-rules";
import { defineMetric } from "../mixins/define-metric";

interface RawEvent {
	name: string;
	payload: unknown;
	receivedAt: Date;
}

/** A valid event and the counters it moves. */
interface Countable {
	event: AnalyticsEvent;
	increments: Increment[];
}

/** One batch being counted: its claim id (on its claim rows), its writer and number. */
interface CountingBatch extends BatchTag {
	claim: string;
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
		/** Events counted at most as one batch (those waiting while the one before is written go together). */
		countBatch: number;
	};
	/** How often batches left unfinished by a run that is over (a crashed node) are looked for. */
	recoverBatchesEveryMs: number;
}

interface Counts {
	received: number;
	rejected: number;
	duplicates: number;
	counted: number;
	/** Of `counted`, events whose batch was stopped half-way and finished afterwards. */
	recovered: number;
}

interface AnalyticsVars extends DbServiceThis {
	pipeline: Pipeline<RawEvent>;
	counts: Counts;
	/** Items lost by a failed stage, as of the last catch-up page that was stored. */
	failuresSettled: number;
	/** This start of the service: the writer of its batches, and the number of its last batch. */
	writer: string;
	lastSeq: number;
	/** Batches of this start that failed half-way, with their events (for the metrics once finished). */
	unfinished: Map<string, AnalyticsEvent[]>;
	/** Counting and finishing batches run one at a time (see BatchTag): the end of the last one queued. */
	countingTail: Promise<unknown>;
	recoveryTimer: NodeJS.Timeout | null;
	startedAt: number;
}

interface AnalyticsMethods {
	ingest(name: string, payload: unknown, ctx?: Context | null, emittedAt?: Date): Promise<void>;
	storeIngested(): Promise<void>;
	validate(batch: RawEvent[]): Countable[];
	count(batch: Countable[]): Promise<never[]>;
	claim(batch: Countable[], counting: CountingBatch): Promise<Countable[]>;
	addToCounters(increments: Increment[], tag: BatchTag): Promise<void>;
	addToCounter(inc: Increment, tag: BatchTag): Promise<void>;
	markCounted(claim: string, hasLiveOnly?: boolean): Promise<void>;
	finishBatches(onlyOwn?: boolean): Promise<number>;
	runIsOver(runner: NodeRun, writer: string): boolean;
	serially<T>(fn: () => Promise<T>): Promise<T>;
	counted(events: AnalyticsEvent[]): void;
	recordMetrics(events: AnalyticsEvent[]): void;
	registerMetrics(): void;
	readCounters(metrics: string[], from: Date, to: Date): Promise<HourlyCounter[]>;
	catalogNames(ctx: Context, productIds: string[]): Promise<Map<string, string>>;
	stats(): PipelineStats & Counts;
}

type AnalyticsThis = Service<AnalyticsSettings> & AnalyticsVars & AnalyticsMethods;
type RangeParams = { from?: Date; to?: Date };

/** Processed event ids are kept longer than producers keep events for replay (the outbox: 7 days). */
const DEDUPE_RETENTION_SECONDS = 14 * 24 * 3600;
const CHECKOUT_BUCKETS_SECONDS = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120];

const rangeParams = {
	from: isoDateRule({ optional: true }),
	to: isoDateRule({ optional: true }),
} as const;

function ingestEvent(this: AnalyticsThis, ctx: Context) {
	return this.ingest(ctx.eventName!, ctx.params);
}

function rangeOf(params: RangeParams, interval?: Interval): { from: Date; to: Date } {
	const range = resolveRange(params.from, params.to, new Date(), interval);
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
			sources: { orders: ["order.created", "order.confirmed", "order.cancelled", "checkout.failed"], payments: ["payment.refunded", "payment.refund_failed", "payment.failed"] },
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
					// Per writer (one start of the service), the number of the last batch counted in it.
					countedUpTo: Object,
				},
				indexes: [{ fields: { bucket: 1, metric: 1, key: 1 }, unique: true }],
			},
			processed_events: {
				// `claim` names the batch that claimed it: after an insert that stopped half-way, our own rows are told from others'.
				// `pending` and `counting` (writer, seq, runner, increments) stay until the batch is in every counter.
				fields: { eventId: { type: String, required: true }, type: String, processedAt: Date, claim: String, pending: Boolean, counting: Object },
				indexes: [
					{ fields: { eventId: 1 }, unique: true },
					{ fields: { processedAt: 1 }, expireAfterSeconds: DEDUPE_RETENTION_SECONDS },
					// Only unfinished batches are in it: the sweep reads a handful of rows, not two weeks of them.
					{ fields: { pending: 1 }, sparse: true },
				],
			},
		}),
		HealthMixin,
	],
	settings: {
		rest: "/",
		pipeline: { capacity: 1000, validateBatch: 50, validateConcurrency: 1, lingerMs: 100, countBatch: 500 },
		recoverBatchesEveryMs: 10_000,
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
			openapi: { response: "SalesReport" },
			roles: ["admin"],
			params: { ...rangeParams, interval: { type: "enum", values: [...INTERVALS], default: "day" }, $$strict: "remove" },
			async handler(this: AnalyticsThis, ctx: Context<RangeParams & { interval: Interval }, ShopMeta>) {
				const { from, to } = rangeOf(ctx.params, ctx.params.interval);
				return salesReport(await this.readCounters(["orders", "revenue", "refunds"], from, to), ctx.params.interval);
			},
		},
		// Product revenue is line totals net of their share of the order discount, ranked within a currency.
		topProducts: {
			rest: "GET /analytics/top-products",
			openapi: { response: "TopProducts" },
			roles: ["admin"],
			params: {
				...rangeParams,
				limit: { type: "number", integer: true, min: 1, max: 100, default: 10, convert: true },
				currency: currencyFilterRule,
				$$strict: "remove",
			},
			async handler(this: AnalyticsThis, ctx: Context<RangeParams & { limit: number; currency?: string }, ShopMeta>) {
				const { from, to } = rangeOf(ctx.params);
				const report = topProductsReport(await this.readCounters(["units", "product_revenue"], from, to), ctx.params.limit, ctx.params.currency);
				return withCatalogNames(report, await this.catalogNames(ctx, [...report.byUnits, ...report.byRevenue].map((r) => r.productId)));
			},
		},
		funnel: {
			rest: "GET /analytics/funnel",
			openapi: { response: "Funnel" },
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
				await this.countingTail;
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

		validate(batch: RawEvent[]) {
			const fresh = new Map<string, Countable>();
			for (const raw of batch) {
				const res = normaliseEvent(raw.name, raw.payload, raw.receivedAt);
				if (!res.ok) {
					this.counts.rejected++;
					this.logger.warn(`Rejected ${raw.name} event ${res.eventId ?? "(no eventId)"}: ${res.reason}`);
				} else if (fresh.has(res.event.eventId)) this.counts.duplicates++;
				else fresh.set(res.event.eventId, { event: res.event, increments: incrementsFor(res.event) });
			}
			return [...fresh.values()];
		},

		/**
		 * Events that waited together are one batch: one claim insert, one upsert per counter for all of
		 * them, one update marking them counted. A failure leaves the batch to be finished (below).
		 */
		count(waiting: Countable[]) {
			return this.serially(async () => {
				// Validate batches waiting together: two copies of one event in different ones (a live delivery
				// and the outbox read of it) would both pass the claim, the second as the first's own row.
				const batch = [...new Map(waiting.map((c) => [c.event.eventId, c])).values()];
				this.counts.duplicates += waiting.length - batch.length;
				// A batch of this run stopped half-way is finished first: a later one would mark its counters past it.
				if (this.unfinished.size) await this.finishBatches(true);
				const counting: CountingBatch = { claim: newId(), writer: this.writer, seq: ++this.lastSeq };
				const events = batch.map((c) => c.event);
				this.unfinished.set(counting.claim, events);
				const claimed = await this.claim(batch, counting);
				if (claimed.length) {
					await this.addToCounters(combineIncrements(claimed.flatMap((c) => c.increments)), counting);
					await this.markCounted(counting.claim, claimed.some((c) => LIVE_ONLY_EVENTS.includes(c.event.type)));
				}
				this.unfinished.delete(counting.claim);
				this.counted(claimed.map((c) => c.event));
				return [];
			});
		},

		/**
		 * The unique eventId is the claim: of two deliveries of one event, only one insert succeeds. A
		 * batch is claimed with one insert; when some of it was claimed before (a replay), event by event.
		 * Each row carries its event's increments until the batch is counted: with the claim in the same
		 * write, a batch stopped at any point can be finished from its rows alone.
		 */
		async claim(batch: Countable[], counting: CountingBatch) {
			if (!batch.length) return [];
			const processedAt = new Date();
			const runner: NodeRun = { nodeID: this.broker.nodeID, instanceID: this.broker.instanceID };
			const row = ({ event, increments }: Countable) => ({
				eventId: event.eventId,
				type: event.type,
				processedAt,
				claim: counting.claim,
				pending: true,
				counting: { writer: counting.writer, seq: counting.seq, runner, increments },
			});
			try {
				await withRetry(3, () => this.db.processed_events.insertMany(batch.map(row)));
				return batch;
			} catch (err: any) {
				if (!isDuplicate(err)) throw err;
			}
			const claimed = await Promise.all(
				batch.map(async (countable) => {
					try {
						await withRetry(3, () => this.db.processed_events.insert(row(countable)));
						return countable;
					} catch (err: any) {
						if (!isDuplicate(err)) throw err;
						// Ours when the batch insert stored it before it stopped (MongoDB inserts in order up to the duplicate).
						if ((await this.db.processed_events.findOne({ eventId: countable.event.eventId }))?.claim === counting.claim) return countable;
						this.counts.duplicates++;
						return null;
					}
				}),
			);
			return claimed.filter((c): c is Countable => c !== null);
		},

		/** One conditional upsert per counter, in parallel; all of them settle before a failure is reported. */
		async addToCounters(increments: Increment[], tag: BatchTag) {
			// Retried because the claim is already made; a write that still fails leaves the batch unfinished.
			const results = await Promise.allSettled(increments.map((inc) => withRetry(3, () => this.addToCounter(inc, tag))));
			const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
			if (failed) throw failed.reason;
		},

		async addToCounter(inc: Increment, tag: BatchTag) {
			const counter = { bucket: inc.bucket, metric: inc.metric, key: inc.key };
			const update = counterUpdate(inc, tag, new Date());
			try {
				await this.db.hourly.updateOne({ id: counterId(inc), ...counter, ...notCountedYet(tag) }, update, { upsert: true });
			} catch (err: any) {
				if (!isDuplicate(err)) throw err;
				// The counter exists but did not match: it has this batch already (nothing to do), it was stored
				// before counters had their id (found by its fields), or a concurrent upsert created it just now.
				await this.db.hourly.updateOne({ ...counter, ...notCountedYet(tag) }, update);
			}
		},

		/**
		 * The batch is in every counter: its rows stop being pending. Those of live-only events go (a
		 * view or a cart addition is never delivered again): kept for the 14 days of a replayable event's,
		 * one per product view filled the store and the memory it lives in (~1.5 KB each).
		 */
		async markCounted(claim: string, hasLiveOnly = true) {
			if (hasLiveOnly) await withRetry(3, () => this.db.processed_events.removeMany({ pending: true, claim, type: { $in: LIVE_ONLY_EVENTS } }));
			await withRetry(3, () => this.db.processed_events.updateMany({ pending: true, claim }, { $unset: { pending: true, counting: true } }));
		},

		/**
		 * Finishes the batches whose counting stopped half-way: this run's own (`onlyOwn`, before its next
		 * batch), and those of runs that are over. Each writer's in order, and the first failure stops it.
		 */
		async finishBatches(onlyOwn = false) {
			const rows = (await this.db.processed_events.find({ pending: true })) as unknown as PendingClaim<NodeRun>[];
			let finished = 0;
			for (const batch of unfinishedBatches(rows)) {
				const own = batch.writer === this.writer;
				if (!own && (onlyOwn || !this.runIsOver(batch.runner, batch.writer))) continue;
				await this.addToCounters(batch.increments, batch);
				await this.markCounted(batch.claim);
				const ids = new Set(batch.eventIds);
				const events = (this.unfinished.get(batch.claim) ?? []).filter((e) => ids.has(e.eventId));
				this.unfinished.delete(batch.claim);
				this.counts.counted += batch.eventIds.length - events.length;
				this.counts.recovered += batch.eventIds.length;
				this.counted(events);
				finished += batch.eventIds.length;
				this.logger.info(`Finished counting an interrupted batch of ${batch.eventIds.length} event(s)`);
			}
			// This run's batches with no pending row left had nothing claimed: their events come again from their outbox.
			const pending = new Set(rows.map((r) => r.claim));
			for (const claim of this.unfinished.keys()) if (!pending.has(claim)) this.unfinished.delete(claim);
			return finished;
		},

		/** Whether the run that claimed a batch has ended, so that nobody is counting it any more. */
		runIsOver(runner: NodeRun, writer: string) {
			const view = brokerRunView(this.broker, this.startedAt);
			// An earlier start of this service on this broker.
			if (runner.nodeID === view.self.nodeID && runner.instanceID === view.self.instanceID) return writer !== this.writer;
			return runnerIsGone(runner, view);
		},

		serially<T>(fn: () => Promise<T>): Promise<T> {
			const run = this.countingTail.then(fn);
			this.countingTail = run.catch(() => undefined);
			return run;
		},

		counted(events: AnalyticsEvent[]) {
			this.counts.counted += events.length;
			this.recordMetrics(events);
		},

		registerMetrics() {
			if (!this.broker.isMetricsEnabled()) return;
			const define = (spec: Parameters<typeof defineMetric>[1]) => defineMetric(this.broker, spec);
			define({ name: "orders_total", type: "counter", labelNames: ["status"], description: "Orders by the status they reached" });
			// Counters only go up, so refunds have their own: net revenue = revenue - (refunded - refunds_failed).
			define({ name: "revenue_cents_total", type: "counter", labelNames: ["currency"], unit: "cents", description: "Paid order totals, shipping included" });
			define({ name: "refunded_cents_total", type: "counter", labelNames: ["currency"], unit: "cents", description: "Refunded amounts of paid orders (not of payments that came after their order was cancelled)" });
			define({ name: "refunds_failed_cents_total", type: "counter", labelNames: ["currency"], unit: "cents", description: "Refunds of paid orders the payment provider failed after accepting them (the money stayed with the shop)" });
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
					case "checkout.failed":
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
					case "payment.refund_failed":
						// A counter only goes up: failed refunds are counted on their own.
						if (e.sale) m.increment("refunds_failed_cents_total", { currency: e.currency }, e.amount);
						break;
					case "payment.failed":
						m.increment("payment_failures_total");
						break;
				}
				const failed = checkoutFailureOf(e);
				if (failed !== null) m.increment("checkout_failures_total", { reason: failed });
			}
		},

		/** The products' names as the catalog has them now; none (the names sold under stand) when it cannot be asked. */
		async catalogNames(ctx: Context, productIds: string[]) {
			const ids = [...new Set(productIds)];
			if (!ids.length) return new Map<string, string>();
			try {
				const products = await ctx.call<Array<{ id: string; name: string }>, { ids: string[] }>("products.getMany", { ids });
				return new Map(products.map((p) => [p.id, p.name]));
			} catch (err) {
				this.logger.warn("Product names for the top products report not available:", (err as Error).message);
				return new Map<string, string>();
			}
		},

		async readCounters(metrics: string[], from: Date, to: Date) {
			const { fromKey, lastKey } = hourRange(from, to);
			return (await this.db.hourly.find({ metric: { $in: metrics }, bucket: { $gte: fromKey, $lte: lastKey } })) as unknown as HourlyCounter[];
		},

		stats() {
			return { ...this.pipeline.stats(), ...this.counts };
		},
	},

	created(this: AnalyticsThis) {
		const opts = this.settings.pipeline;
		this.counts = { received: 0, rejected: 0, duplicates: 0, counted: 0, recovered: 0 };
		this.failuresSettled = 0;
		this.writer = newId();
		this.lastSeq = 0;
		this.unfinished = new Map();
		this.countingTail = Promise.resolve();
		this.recoveryTimer = null;
		this.pipeline = new Pipeline<RawEvent>(
			[
				{ name: "validate", batchSize: opts.validateBatch, concurrency: opts.validateConcurrency, lingerMs: opts.lingerMs, handle: (batch: RawEvent[]) => this.validate(batch) },
				// Whatever waits here while a batch is written goes as the next batch.
				{ name: "count", batchSize: opts.countBatch, handle: (batch: Countable[]) => this.count(batch) },
			],
			{
				capacity: opts.capacity,
				onError: (err, stage, batch) => this.logger.error(`Analytics ${stage} stage dropped ${batch.length} item(s):`, err),
			},
		);
		this.registerMetrics();
	},

	async started(this: AnalyticsThis) {
		this.startedAt = Date.now();
		const sweep = () =>
			this.serially(() => this.finishBatches()).catch((err) => this.logger.warn(`Finishing interrupted analytics batches failed, will retry: ${(err as Error).message}`));
		// Before new batches: what a crash left half-counted is finished first (or by the next sweep).
		await sweep();
		this.pipeline.start();
		this.recoveryTimer = setInterval(sweep, this.settings.recoverBatchesEveryMs);
		this.recoveryTimer.unref();
	},

	async stopped(this: AnalyticsThis) {
		if (this.recoveryTimer) clearInterval(this.recoveryTimer);
		// Runs before the db mixin disconnects: what is queued is still stored.
		await this.pipeline.stop();
		await this.countingTail;
	},
};

export default AnalyticsService;
