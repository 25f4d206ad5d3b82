/**
 * The arithmetic of `npm run bench:compare`: rounds of two builds measured one after the other,
 * summed up per scenario as medians and the ratio of the change to the base. No I/O.
 */

/** What one bench run reports for a scenario (a row of bench/results/*.json). */
export interface ScenarioFigures {
	rps: number;
	p99: number;
	cpuMsPerReq: number;
	baselineRps?: number;
}

/** One round: each build's figures per scenario name, as one bench run of each reported them. */
export interface Round {
	base: Record<string, ScenarioFigures>;
	change: Record<string, ScenarioFigures>;
}

export interface ScenarioComparison {
	scenario: string;
	rounds: number;
	base: ScenarioFigures;
	change: ScenarioFigures;
	/** change / base of the medians: above 1 is faster for rps, slower for p99 and CPU. */
	ratio: { rps: number; p99: number; cpuMsPerReq: number };
	/** Rounds in which the change used less CPU per request than the base. */
	cpuWins: number;
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: number[]): number {
	const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
	if (finite.length === 0) return NaN;
	const mid = finite.length >> 1;
	return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function medians(rows: ScenarioFigures[]): ScenarioFigures {
	return {
		rps: median(rows.map((r) => r.rps)),
		p99: median(rows.map((r) => r.p99)),
		cpuMsPerReq: median(rows.map((r) => r.cpuMsPerReq)),
		baselineRps: median(rows.map((r) => r.baselineRps ?? NaN)),
	};
}

/**
 * Per scenario measured by both builds in a round: the medians over those rounds and their ratios.
 * A scenario a build failed to report in some round counts only the rounds where both did.
 */
export function compareRounds(rounds: Round[]): ScenarioComparison[] {
	const names = [...new Set(rounds.flatMap((r) => Object.keys(r.base)))];
	const out: ScenarioComparison[] = [];
	for (const scenario of names) {
		const paired = rounds.filter((r) => r.base[scenario] && r.change[scenario]);
		if (paired.length === 0) continue;
		const base = medians(paired.map((r) => r.base[scenario]));
		const change = medians(paired.map((r) => r.change[scenario]));
		out.push({
			scenario,
			rounds: paired.length,
			base,
			change,
			ratio: { rps: round3(change.rps / base.rps), p99: round3(change.p99 / base.p99), cpuMsPerReq: round3(change.cpuMsPerReq / base.cpuMsPerReq) },
			cpuWins: paired.filter((r) => r.change[scenario].cpuMsPerReq < r.base[scenario].cpuMsPerReq).length,
		});
	}
	return out;
}

/** The label of the single-process shop's results (metrics on, as shipped) in a bench report. */
export const SINGLE_PROCESS_RUN = "single process (metrics on)";

/** The figures of the single-process shop (metrics on) in one bench report, by scenario name. */
export function singleProcessFigures(report: { results?: Record<string, Array<ScenarioFigures & { name: string }>> }): Record<string, ScenarioFigures> {
	const rows = report.results?.[SINGLE_PROCESS_RUN] ?? [];
	return Object.fromEntries(rows.map(({ name, rps, p99, cpuMsPerReq, baselineRps }) => [name, { rps, p99, cpuMsPerReq, baselineRps }]));
}

/** Which build runs first in round `i`: they take turns, so a machine slowing down during a round favours neither. */
export function baseRunsFirst(i: number): boolean {
	return i % 2 === 0;
}

/** The comparison as a Markdown table. */
export function comparisonTable(rows: ScenarioComparison[], baseLabel: string): string {
	const lines = [
		`| scenario | rounds | req/s ${baseLabel} → this tree | ratio | p99 ms | ratio | CPU ms/req | ratio | rounds with less CPU |`,
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|",
	];
	// The mean of two middle values can carry float noise (8.905000000000001).
	const f = round3;
	for (const r of rows) {
		lines.push(
			`| ${r.scenario} | ${r.rounds} | ${f(r.base.rps)} → ${f(r.change.rps)} | ${r.ratio.rps} | ${f(r.base.p99)} → ${f(r.change.p99)} | ${r.ratio.p99} | ${f(r.base.cpuMsPerReq)} → ${f(r.change.cpuMsPerReq)} | ${r.ratio.cpuMsPerReq} | ${r.cpuWins}/${r.rounds} |`,
		);
	}
	return lines.join("\n");
}
