/**
 * Every PromQL query of the Grafana dashboards and the Prometheus alert rules names a metric the
 * shop exposes, with labels that metric has. Exposed names: moleculer's own metric constants, typed
 * by the registry of a broker built from the shop's config and written the way moleculer's
 * Prometheus reporter writes them, plus the shop's own metrics.
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { METRIC, ServiceBroker } from "moleculer";
import { buildBrokerConfig } from "../../moleculer.config";

const ROOT = path.resolve(__dirname, "../..");
const DASHBOARD_DIR = path.join(ROOT, "monitoring/grafana/dashboards");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");

interface MetricSpec {
	name: string;
	type: string;
	labelNames: string[];
	buckets?: boolean;
	quantiles?: boolean;
	rate?: boolean;
}

// The shop's own metrics, as its code registers them (checked against the source below).
// Moleculer 0.15 no longer measures event-loop lag, hence the shop's own gauges (milliseconds).
const SHOP_METRICS: MetricSpec[] = [
	{ name: "orders_total", type: "counter", labelNames: ["status"] },
	{ name: "revenue_cents_total", type: "counter", labelNames: ["currency"] },
	{ name: "refunded_cents_total", type: "counter", labelNames: ["currency"] },
	{ name: "refunds_failed_cents_total", type: "counter", labelNames: ["currency"] },
	{ name: "payment_failures_total", type: "counter", labelNames: [] },
	{ name: "http_responses_total", type: "counter", labelNames: ["code"] },
	{ name: "notification_sends_total", type: "counter", labelNames: ["channel", "provider"] },
	{ name: "notification_send_failures_total", type: "counter", labelNames: ["channel", "provider"] },
	{ name: "checkout_duration_seconds", type: "histogram", labelNames: [], buckets: true, quantiles: false },
	{ name: "process.eventloop.lag.avg", type: "gauge", labelNames: [] },
	{ name: "process.eventloop.lag.max", type: "gauge", labelNames: [] },
];
const SOURCE_DIRS = ["services", "mixins", "lib", "adapters"];

// Prometheus adds the target's labels to every scraped series (`group` by our relabelling) and
// writes `up` per target itself.
const TARGET_LABELS = ["job", "instance", "group"];
const PROMETHEUS_SERIES = new Map([["up", new Set(TARGET_LABELS)]]);

/** Series names and their labels, exactly as moleculer's PrometheusReporter writes them. */
function prometheusSeries(spec: MetricSpec, defaultLabels: string[], prefix = "", suffix = ""): Map<string, Set<string>> {
	const base = `${prefix}${spec.name}${suffix}`.replace(/[.-]/g, "_");
	const labels = [...defaultLabels, ...TARGET_LABELS, ...spec.labelNames];
	const series = new Map<string, Set<string>>();
	const add = (name: string, extra: string[] = []) => series.set(name, new Set([...labels, ...extra]));
	if (spec.type === "counter" || spec.type === "gauge") add(base);
	if (spec.type === "info") add(base, ["value"]);
	if (spec.type === "histogram") {
		// The shop's reporter (mixins/prometheus-reporter.ts) writes _sum and _count with the buckets too.
		if (spec.buckets) for (const [name, extra] of [["_bucket", ["le"]], ["_sum", []], ["_count", []]] as const) add(`${base}${name}`, [...extra]);
		if (spec.quantiles) {
			add(base, ["quantile"]);
			for (const s of ["sum", "count", "min", "mean", "variance", "stddev", "max"]) add(`${base}_${s}`);
		}
	}
	// No `_rate` series: the shop's reporter leaves out Moleculer's in-process rates (mixins/prometheus-reporter.ts).
	return series;
}

const AGGREGATIONS = new Set(["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"]);
const FUNCTIONS = new Set([
	...AGGREGATIONS,
	...["abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv", "exp", "floor"],
	...["histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear"],
	...["rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year"],
	...["avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time", "last_over_time", "present_over_time"],
]);
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);

interface Selector {
	metric: string;
	labels: string[];
}
interface ParsedQuery {
	selectors: Selector[];
	grouping: string[];
}

const TOKEN = /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?|[a-zA-Z_:][\w:]*|=~|!~|!=|==|>=|<=|[(){}[\],=<>+\-*/%^@]/y;

function tokenize(expr: string): string[] {
	const tokens: string[] = [];
	TOKEN.lastIndex = 0;
	while (TOKEN.lastIndex < expr.length) {
		const at = TOKEN.lastIndex;
		const m = TOKEN.exec(expr);
		if (!m) throw new Error(`cannot read PromQL at "${expr.slice(at, at + 20)}"`);
		if (m[0].trim()) tokens.push(m[0]);
	}
	return tokens;
}

/** Metric selectors (with their label matchers) and grouping labels of one PromQL expression. */
function parsePromQL(query: string): ParsedQuery {
	// Grafana variables: inside label values they stay text; in ranges they become a duration.
	const tokens = tokenize(query.replace(/\$(?:__\w+|\{[^}]*\}|\w+)/g, "1m"));
	const selectors: Selector[] = [];
	const grouping: string[] = [];
	const labelList = (start: number): [string[], number] => {
		const labels: string[] = [];
		let i = start + 1;
		for (; tokens[i] !== ")"; i++) if (tokens[i] !== ",") labels.push(tokens[i]);
		return [labels, i];
	};
	for (let i = 0; i < tokens.length; i++) {
		const t = tokens[i];
		if (t === "[") {
			while (tokens[i] !== "]") i++;
		} else if (t === "{") {
			throw new Error("a selector without a metric name");
		} else if (/^[a-zA-Z_:]/.test(t)) {
			const next = tokens[i + 1];
			if (GROUPING.has(t)) {
				if (next === "(") {
					const [labels, end] = labelList(i + 1);
					grouping.push(...labels);
					i = end;
				}
			} else if (next === "(" || AGGREGATIONS.has(t)) {
				if (!FUNCTIONS.has(t)) throw new Error(`unknown function ${t}()`);
			} else if (!KEYWORDS.has(t)) {
				const labels: string[] = [];
				if (next === "{") {
					i += 2;
					for (; tokens[i] !== "}"; i++) {
						if (tokens[i] === ",") continue;
						labels.push(tokens[i]);
						i += 2; // operator, value
					}
				}
				selectors.push({ metric: t, labels });
			}
		}
	}
	return { selectors, grouping };
}

/** Grafana's `label_values(selector, label)` or a plain PromQL expression. */
function parseQuery(query: string): ParsedQuery {
	const m = /^\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*$/s.exec(query);
	if (!m) return parsePromQL(query);
	const parsed = parsePromQL(m[1]);
	return { ...parsed, grouping: [...parsed.grouping, m[2]] };
}

type Exposed = Map<string, Set<string>>;

/** What is wrong with a query against the exposed series: unknown metrics or labels. */
function problemsOf(query: string, exposed: Exposed, shownLabels: string[] = []): string[] {
	let parsed: ParsedQuery;
	try {
		parsed = parseQuery(query);
	} catch (err) {
		return [(err as Error).message];
	}
	if (parsed.selectors.length === 0) return ["names no metric"];
	const problems: string[] = [];
	const known = new Set<string>();
	for (const { metric, labels } of parsed.selectors) {
		const has = exposed.get(metric);
		if (!has) {
			problems.push(`unknown metric ${metric}`);
			continue;
		}
		has.forEach((l) => known.add(l));
		for (const label of labels) if (!has.has(label)) problems.push(`${metric} has no label ${label}`);
	}
	if (problems.length) return problems;
	for (const label of [...parsed.grouping, ...shownLabels]) if (!known.has(label)) problems.push(`no metric of the query has label ${label}`);
	return problems;
}

/** Metric definitions in the shop's code: object literals with `name: "...", type: "..."`. */
function registeredInSource(): Map<string, MetricSpec> {
	const found = new Map<string, MetricSpec>();
	const files = [path.join(ROOT, "moleculer.config.ts")];
	for (const dir of SOURCE_DIRS) {
		for (const f of fs.readdirSync(path.join(ROOT, dir), { recursive: true }) as string[]) if (f.endsWith(".ts")) files.push(path.join(ROOT, dir, f));
	}
	for (const file of files) {
		const text = fs.readFileSync(file, "utf8");
		for (const m of text.matchAll(/\{\s*name:\s*"([\w.-]+)",\s*type:\s*"(counter|gauge|histogram|info)"([^}]*)\}/g)) {
			const rest = m[3];
			const labels = /labelNames:\s*\[([^\]]*)\]/.exec(rest)?.[1] ?? "";
			found.set(m[1], {
				name: m[1],
				type: m[2],
				labelNames: [...labels.matchAll(/"([^"]+)"/g)].map((l) => l[1]),
				...(m[2] === "histogram" ? { buckets: /\bbuckets:\s*(?!false)/.test(rest), quantiles: /\bquantiles:\s*(?!false)/.test(rest) } : {}),
			});
		}
	}
	return found;
}

let exposed: Exposed;
let moleculerNames: Set<string>;

beforeAll(async () => {
	const config = buildBrokerConfig({ NODE_ENV: "test", METRICS_ENABLED: "true", TRANSPORTER: "Fake" });
	const reporter = ((config.metrics as any).reporter as any[]).find((r) => r.type === "ShopPrometheus");
	// Process metrics are collected outside NODE_ENV=test, as on every real node; histograms as configured (no quantiles).
	const broker = new ServiceBroker({ ...config, logger: false, metrics: { ...(config.metrics as object), enabled: true, reporter: [], collectProcessMetrics: true } });
	await broker.start();
	try {
		const constants = new Set(Object.entries(METRIC).filter(([k]) => !k.startsWith("TYPE_") && !k.startsWith("UNIT_")).map(([, v]) => v as string));
		const defaultLabels = ["namespace", "nodeID"];
		const opts = reporter?.options ?? {};
		exposed = new Map(PROMETHEUS_SERIES);
		moleculerNames = new Set();
		const specs: MetricSpec[] = [];
		for (const name of constants) {
			const m = broker.metrics.getMetric(name) as any;
			// A constant this broker does not register (another discoverer, ...) is not exposed.
			if (m) specs.push({ name, type: m.type, labelNames: m.labelNames, buckets: !!m.buckets, quantiles: !!m.quantiles, rate: !!m.rate });
		}
		for (const spec of specs) {
			for (const [series, labels] of prometheusSeries(spec, defaultLabels, opts.metricNamePrefix, opts.metricNameSuffix)) {
				exposed.set(series, labels);
				moleculerNames.add(series);
			}
		}
		for (const spec of SHOP_METRICS) {
			for (const [series, labels] of prometheusSeries(spec, defaultLabels, opts.metricNamePrefix, opts.metricNameSuffix)) exposed.set(series, labels);
		}
	} finally {
		await broker.stop();
	}
});

interface Query {
	where: string;
	expr: string;
	shown: string[];
}

function dashboardFiles(): string[] {
	return fs.readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith(".json"));
}

function panelsOf(dashboard: any): any[] {
	return (dashboard.panels ?? []).flatMap((p: any) => [p, ...(p.panels ?? [])]);
}

const legendLabels = (format = "") => [...format.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]);

function dashboardQueries(): Query[] {
	const queries: Query[] = [];
	for (const file of dashboardFiles()) {
		const dashboard = JSON.parse(fs.readFileSync(path.join(DASHBOARD_DIR, file), "utf8"));
		for (const panel of panelsOf(dashboard)) {
			for (const target of panel.targets ?? []) {
				queries.push({ where: `${file} › ${panel.title} › ${target.refId}`, expr: target.expr, shown: legendLabels(target.legendFormat) });
			}
		}
		for (const variable of dashboard.templating?.list ?? []) {
			if (variable.type !== "query") continue;
			const expr = typeof variable.query === "string" ? variable.query : variable.query.query;
			queries.push({ where: `${file} › variable ${variable.name}`, expr, shown: [] });
		}
	}
	return queries;
}

const alertGroups = () => YAML.parse(read("monitoring/prometheus/alerts.yml")).groups as any[];

function alertQueries(): Query[] {
	return alertGroups().flatMap((g) =>
		g.rules.map((r: any) => ({
			where: `alerts.yml › ${r.alert}`,
			expr: r.expr,
			shown: [...JSON.stringify(r.annotations ?? {}).matchAll(/\$labels\.(\w+)/g)].map((m) => m[1]),
		})),
	);
}

describe("reading PromQL", () => {
	test.each([
		["rate(moleculer_request_total[5m])", ["moleculer_request_total"], []],
		['sum by (action) (rate(moleculer_request_total{type="local", nodeID=~"$node"}[$__rate_interval]))', ["moleculer_request_total"], ["action"]],
		["histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le, nodeID)) > 1e3", ["x_bucket"], ["le", "nodeID"]],
		['sum(rate(a_total{l="x{y}"}[1h30m])) / on (nodeID) group_left sum(b) offset 5m', ["a_total", "b"], ["nodeID"]],
		['label_values(moleculer_request_total{namespace=~"$namespace"}, nodeID)', ["moleculer_request_total"], ["nodeID"]],
	])("%s", (expr, metrics, grouping) => {
		const parsed = parseQuery(expr);
		expect(parsed.selectors.map((s) => s.metric)).toEqual(metrics);
		expect(parsed.grouping).toEqual(grouping);
	});

	test("label matchers belong to their selector", () => {
		expect(parsePromQL('a{x="1", y!~"2"} + b{z="3"}').selectors).toEqual([
			{ metric: "a", labels: ["x", "y"] },
			{ metric: "b", labels: ["z"] },
		]);
	});
});

describe("the exposed metrics", () => {
	test("follow moleculer's reporter: no _total added, dashes and dots become underscores", () => {
		expect(moleculerNames).toContain("moleculer_request_total");
		expect(moleculerNames).not.toContain("moleculer_request_total_total");
		expect(moleculerNames).toContain("moleculer_circuit_breaker_opened_active");
		expect(moleculerNames).toContain("moleculer_transporter_packets_sent_bytes");
		for (const s of ["_bucket", "_sum", "_count"]) expect(moleculerNames).toContain(`moleculer_request_time${s}`);
		// No in-process quantiles (defaultQuantiles: null).
		expect(moleculerNames).not.toContain("moleculer_request_time");
		expect(exposed.get("moleculer_request_time_bucket")).toContain("le");
		expect(exposed.get("moleculer_circuit_breaker_opened_active")).toContain("affectedNodeID");
	});

	test.each([
		["a metric moleculer does not have", "rate(moleculer_request_duration_bucket[5m])", "unknown metric moleculer_request_duration_bucket"],
		["a _total moleculer does not add", "rate(moleculer_transporter_packets_sent_bytes_total[5m])", "unknown metric"],
		["event-loop lag under moleculer 0.14's other name", "process_eventloop_lag_average", "unknown metric"],
		["a label the metric lacks", 'moleculer_request_total{node="a"}', "has no label node"],
		["grouping by a label no metric has", "sum by (status) (rate(moleculer_request_total[5m]))", "no metric of the query has label status"],
		["a misspelt function", "histogram_quantil(0.9, rate(checkout_duration_seconds_bucket[5m]))", "unknown function"],
		["no metric at all", "vector(1)", "names no metric"],
		["a histogram's in-process quantile (turned off)", 'checkout_duration_seconds{quantile="0.99"}', "unknown metric"],
	])("rejects %s", (_what, expr, problem) => {
		expect(problemsOf(expr, exposed).join("; ")).toContain(problem);
	});

	test("the shop's metrics are the ones its code registers (name, type, labels, histogram series)", () => {
		const registered = registeredInSource();
		for (const spec of SHOP_METRICS) {
			expect(registered.get(spec.name)).toEqual(spec);
		}
	});

	test("a legend naming a label the query does not keep is caught", () => {
		expect(problemsOf("sum by (nodeID) (rate(orders_total[5m]))", exposed, ["nodeId"])).toEqual(["no metric of the query has label nodeId"]);
	});
});

describe("dashboards and alert rules", () => {
	const queries = [...dashboardQueries(), ...alertQueries()];

	test("there are queries to check", () => expect(queries.length).toBeGreaterThan(30));

	test.each(queries.map((q) => [q.where, q]))("%s names exposed metrics and labels", (_where, q) => {
		expect(problemsOf(q.expr, exposed, q.shown)).toEqual([]);
	});

	const metricsOf = (qs: Query[]) => new Set(qs.flatMap((q) => parseQuery(q.expr).selectors.map((s) => s.metric)));

	test("the broker dashboard shows traffic, latency, errors, circuit breakers, transporter and event loop", () => {
		const used = metricsOf(dashboardQueries().filter((q) => q.where.startsWith("broker.json")));
		for (const m of [
			"moleculer_request_total",
			"moleculer_request_time_bucket",
			"moleculer_request_error_total",
			"moleculer_circuit_breaker_opened_active",
			"moleculer_transporter_packets_sent_total",
			"moleculer_transporter_packets_received_total",
			"process_eventloop_lag_avg",
		]) {
			expect(used).toContain(m);
		}
	});

	test("the shop dashboard shows orders, revenue, payment failures and checkout latency", () => {
		const used = metricsOf(dashboardQueries().filter((q) => q.where.startsWith("shop.json")));
		for (const m of ["orders_total", "revenue_cents_total", "payment_failures_total", "checkout_duration_seconds_bucket"]) expect(used).toContain(m);
	});

	test("alert rules cover error rate, p99 latency, open circuit breakers and payment failures", () => {
		const rules = alertGroups().flatMap((g) => g.rules);
		expect(rules.map((r: any) => r.alert)).toEqual(
			expect.arrayContaining(["ShopHighErrorRate", "ShopHighP99Latency", "ShopCircuitBreakerOpen", "ShopPaymentFailuresHigh"]),
		);
		for (const rule of rules) {
			expect(rule).toMatchObject({ for: expect.any(String), labels: { severity: expect.stringMatching(/^(warning|critical)$/) } });
			expect(rule.annotations.summary).toBeTruthy();
		}
	});
});

describe("monitoring wiring", () => {
	const dashboards = dashboardFiles().map((f) => JSON.parse(fs.readFileSync(path.join(DASHBOARD_DIR, f), "utf8")));
	const compose = YAML.parse(read("docker-compose.yml"), { merge: true });

	test("dashboards have distinct uids, distinct panel ids and use the provisioned Prometheus", () => {
		const datasources = YAML.parse(read("monitoring/grafana/provisioning/datasources/datasources.yml")).datasources;
		const promUid = datasources.find((d: any) => d.type === "prometheus").uid;
		expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
		for (const d of dashboards) {
			const ids = panelsOf(d).map((p) => p.id);
			expect(new Set(ids).size).toBe(ids.length);
			const dsVar = d.templating.list.find((v: any) => v.type === "datasource");
			expect(dsVar).toMatchObject({ query: "prometheus", current: { value: promUid } });
			for (const p of panelsOf(d).filter((p) => p.type !== "row")) {
				expect(p.datasource.uid).toBe("${datasource}");
				expect(p.targets.length).toBeGreaterThan(0);
			}
		}
	});

	test("Grafana loads the dashboards from where docker-compose mounts them", () => {
		const provider = YAML.parse(read("monitoring/grafana/provisioning/dashboards/dashboards.yml")).providers[0];
		expect(compose.services.grafana.volumes).toContain(`./monitoring/grafana/dashboards:${provider.options.path}:ro`);
		expect(compose.services.grafana.volumes).toContain("./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro");
	});

	test("Prometheus scrapes every shop node of docker-compose on the metrics port, with the alert rules loaded", () => {
		const prom = YAML.parse(read("monitoring/prometheus/prometheus.yml"));
		expect(prom.rule_files).toContain("alerts.yml");
		const shop = prom.scrape_configs.find((s: any) => s.job_name === "shop");
		const shopNodes = Object.entries<any>(compose.services)
			.filter(([, s]) => s.environment?.SERVICES)
			.map(([name]) => name);
		expect(shopNodes.length).toBeGreaterThanOrEqual(5);
		expect(shop.dns_sd_configs[0]).toMatchObject({ port: 3030, type: "A" });
		expect([...shop.dns_sd_configs[0].names].sort()).toEqual(shopNodes.sort());
	});
});
