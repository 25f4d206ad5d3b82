/**
 * Moleculer's request and event metrics, the same series with the same labels and values, at a
 * fraction of the cost. Moleculer's own Metrics middleware builds four label objects and hashes them
 * into strings seven times per call (~10 µs of a local call's ~15 µs on the reference machine): here
 * each action or event handler keeps, per caller, its labels and their hashes, computed once.
 * The items live in Moleculer's metric objects as before (the Prometheus reporter reads them
 * unchanged); a missing item (first call, or a cleared metric) is made by Moleculer's own method.
 *
 * Use it in place of the built-in "Metrics" (see brokerMiddlewares): broker options
 * `internalMiddlewares: false`, with the internal list given explicitly.
 */
import { METRIC, ServiceBroker, type Context, type Middleware } from "moleculer";

// Moleculer's built-in middleware factories (not in its type definitions).
const { Middlewares } = require("moleculer") as { Middlewares: Record<string, (this: ServiceBroker, broker: ServiceBroker) => Middleware> };

type Labels = Record<string, unknown>;
interface Item {
	value: number;
	timestamp: number;
	rate?: { update(value: number): void };
	sum: number;
	count: number;
	lastValue: number | null;
	bucketValues?: Record<number, number>;
	quantileValues?: { add(value: number): void };
}
interface Metric {
	values: Map<string, Item>;
	buckets?: number[];
	hashingLabels(labels: Labels | null): string;
	changed(value: unknown, labels: Labels | null, timestamp: number): void;
	increment(labels: Labels | null, value?: number, timestamp?: number): Item;
	observe(value: number, labels: Labels | null, timestamp?: number): Item;
}
/** One metric's series for one label set: the labels and their hash, made once. */
interface Series {
	metric: Metric;
	labels: Labels;
	hash: string;
}

function series(metric: Metric, labels: Labels): Series {
	return { metric, labels, hash: metric.hashingLabels(labels) };
}

/** Gauge or counter += by, as Moleculer's increment (a counter is a gauge that only goes up). */
function add(s: Series, by: number, now: number) {
	const item = s.metric.values.get(s.hash);
	if (!item) return void s.metric.increment(s.labels, by, now);
	// `by` is never 0, so the value always changes (Moleculer's set skips an unchanged one).
	const value = item.value + by;
	item.value = value;
	item.timestamp = now;
	item.rate?.update(value);
	s.metric.changed(value, s.labels, now);
}

/** Histogram observe, as Moleculer's (cumulative buckets: every bound at or above the value). */
function observe(s: Series, value: number, now: number) {
	const item = s.metric.values.get(s.hash);
	if (!item) return void s.metric.observe(value, s.labels, now);
	item.timestamp = now;
	item.sum += value;
	item.count++;
	item.lastValue = value;
	const buckets = s.metric.buckets;
	if (item.bucketValues && buckets) {
		let i = 0;
		while (i < buckets.length && value > buckets[i]) i++;
		for (; i < buckets.length; i++) item.bucketValues[buckets[i]] += 1;
	}
	item.quantileValues?.add(value);
	item.rate?.update(item.count);
	s.metric.changed(value, s.labels, now);
}

function elapsedMs(start: [number, number]) {
	const delta = process.hrtime(start);
	return (delta[0] + delta[1] / 1e9) * 1000;
}

/** The total, active and time series of one label set (they share the labels object). */
interface Runs {
	total: Series;
	active: Series;
	time: Series;
}

function runs(metric: (name: string) => Metric, names: { total: string; active: string; time: string }, labels: Labels): Runs {
	return { total: series(metric(names.total), labels), active: series(metric(names.active), labels), time: series(metric(names.time), labels) };
}
const REQUEST = { total: METRIC.MOLECULER_REQUEST_TOTAL, active: METRIC.MOLECULER_REQUEST_ACTIVE, time: METRIC.MOLECULER_REQUEST_TIME };
const EVENT = { total: METRIC.MOLECULER_EVENT_RECEIVED_TOTAL, active: METRIC.MOLECULER_EVENT_RECEIVED_ACTIVE, time: METRIC.MOLECULER_EVENT_RECEIVED_TIME };

/** Wraps a handler with the total, active and time series (and errors) of the runs `runsFor` picks. */
function measured(broker: ServiceBroker, runsFor: (ctx: Context) => Runs, errorMetric: string, before?: (ctx: Context, now: number) => void) {
	return (next: (...args: any[]) => Promise<unknown>) =>
		function leanMetrics(this: unknown, ctx: Context) {
			const runs = runsFor(ctx);
			const now = Date.now();
			add(runs.total, 1, now);
			add(runs.active, 1, now);
			before?.(ctx, now);
			const start = process.hrtime();
			const done = () => {
				const at = Date.now();
				observe(runs.time, elapsedMs(start), at);
				add(runs.active, -1, at);
			};
			return next.call(this, ctx).then(
				(res) => {
					done();
					return res;
				},
				(err: any) => {
					done();
					broker.metrics.increment(errorMetric, { ...runs.total.labels, errorName: err ? err.name : null, errorCode: err ? err.code : null, errorType: err ? err.type : null });
					throw err;
				},
			);
		};
}

/** Per key (a caller, an event name, a level), its value made once. */
function memo<K, T>(make: (key: K) => T): (key: K) => T {
	const made = new Map<K, T>();
	return (key) => {
		let v = made.get(key);
		if (v === undefined) made.set(key, (v = make(key)));
		return v;
	};
}

export function LeanMetricsMiddleware(): (broker: ServiceBroker) => Middleware {
	return (broker) => {
		// Registration and the rarely run hooks (emits, transit, transporter) stay Moleculer's.
		const builtIn = Middlewares.Metrics.call(broker, broker);
		if (!broker.isMetricsEnabled()) return builtIn;
		const metric = (name: string) => broker.metrics.getMetric(name) as unknown as Metric;

		const action = (type: "local" | "remote") => (next: any, def: any) => {
			const service = def.service ? def.service.fullName : null;
			const runsOf = memo((caller: string | null) => runs(metric, REQUEST, { service, action: def.name, caller, type }));
			const levels = memo((level: number) => series(metric(METRIC.MOLECULER_REQUEST_LEVELS), { level }));
			return measured(
				broker,
				(ctx) => runsOf(ctx.caller),
				METRIC.MOLECULER_REQUEST_ERROR_TOTAL,
				(ctx, now) => add(levels(ctx.level), 1, now),
			)(next);
		};

		const localEvent = (next: any, event: any) => {
			const service = event.service ? event.service.name : null;
			const group = event.group || service;
			const runsOf = memo((eventName: string | null) => memo((caller: string | null) => runs(metric, EVENT, { service, event: eventName, group, caller })));
			return measured(broker, (ctx) => runsOf(ctx.eventName ?? null)(ctx.caller), METRIC.MOLECULER_EVENT_RECEIVED_ERROR_TOTAL)(next);
		};

		return { ...builtIn, localAction: action("local"), remoteAction: action("remote"), localEvent } as Middleware;
	};
}

/**
 * The broker's middlewares: the shop's own first (innermost), then Moleculer's internal ones in
 * Moleculer's order, with the lean metrics in place of "Metrics", and HotReload last when the
 * runner was started with --hot. For broker options with `internalMiddlewares: false`.
 */
export function brokerMiddlewares(own: Middleware[]): Array<Middleware | string | ((broker: ServiceBroker) => Middleware | null)> {
	const internal = ((ServiceBroker as any).INTERNAL_MIDDLEWARES as string[]).map((name) => (name === "Metrics" ? LeanMetricsMiddleware() : name));
	// A factory answering null adds nothing (Moleculer skips it).
	const hotReload = (broker: ServiceBroker) => (broker.options.hotReload ? Middlewares.HotReload.call(broker, broker) : null);
	return [...own, ...internal, hotReload];
}
