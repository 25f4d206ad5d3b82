/**
 * Moleculer's Prometheus reporter, writing each histogram's `_sum` and `_count` as every Prometheus
 * histogram has them. Moleculer writes them only next to in-process quantiles, which the shop turns
 * off (moleculer.config.ts, `defaultQuantiles: null`): without them there was no mean latency and no
 * rate of observations from a histogram, the usual queries of a Prometheus user.
 * Without Moleculer's `<name>_rate` lines: in-process per-minute extrapolations (61 "per minute" after
 * 20 requests in all), written inside other metrics' families without HELP or TYPE, which breaks the
 * text format's grouping; Prometheus computes rates itself (rate()).
 * Registered as reporter type "ShopPrometheus", with the options of Moleculer's.
 */
import { MetricReporters } from "moleculer";

interface HistogramItem {
	labels: Record<string, unknown>;
	buckets?: Record<string, number>;
	sum?: number;
	count: number;
}
interface RegistryMetric {
	name: string;
	type: string;
	quantiles?: unknown;
	rate?: unknown;
	snapshot(): HistogramItem[];
}
interface ReporterInternals {
	registry: { store: Map<string, RegistryMetric> };
	matchMetricName(name: string): boolean;
	formatMetricName(name: string): string;
	labelsToStr(labels: Record<string, unknown>, extra?: Record<string, unknown>): string;
}

const Base = (MetricReporters as unknown as { Prometheus: new (opts?: object) => { generatePrometheusResponse(): string } }).Prometheus;

export class ShopPrometheusReporter extends Base {
	generatePrometheusResponse(): string {
		const text = super.generatePrometheusResponse();
		const self = this as unknown as ReporterInternals;
		// The +Inf bucket line of each series (which the reporter writes last), and what follows it.
		const totals = new Map<string, string[]>();
		const rates = new Set<string>();
		self.registry.store.forEach((metric) => {
			const name = self.formatMetricName(metric.name).replace(/[.-]/g, "_");
			if (metric.rate) rates.add(`${name}_rate`);
			if (metric.type !== "histogram" || metric.quantiles || !self.matchMetricName(metric.name)) return;
			for (const item of metric.snapshot()) {
				if (!item.buckets) continue;
				const labels = self.labelsToStr(item.labels);
				totals.set(`${name}_bucket${self.labelsToStr(item.labels, { le: "+Inf" })}`, [`${name}_sum${labels} ${item.sum ?? "NaN"}`, `${name}_count${labels} ${item.count}`]);
			}
		});
		if (totals.size === 0 && rates.size === 0) return text;
		return text
			.split("\n")
			.flatMap((line) => {
				const name = /^[A-Za-z_:][\w:]*/.exec(line)?.[0];
				if (name !== undefined && rates.has(name)) return [];
				const after = totals.get(line.slice(0, line.lastIndexOf(" ")));
				return after ? [line, ...after] : [line];
			})
			.join("\n");
	}
}

MetricReporters.register("ShopPrometheus", ShopPrometheusReporter as never);
