/** The arithmetic behind `npm run bench:compare`: medians, ratios and which build goes first. */
import { baseRunsFirst, compareRounds, comparisonTable, median, singleProcessFigures, type Round } from "../../bench/lib/compare";

const fig = (rps: number, p99: number, cpuMsPerReq: number, baselineRps = 15000) => ({ rps, p99, cpuMsPerReq, baselineRps });

describe("median", () => {
	test.each([
		[[3, 1, 2], 2],
		[[4, 1, 3, 2], 2.5],
		[[7], 7],
		[[5, NaN, 1], 3],
	])("%j → %d", (values, expected) => expect(median(values)).toBe(expected));

	test("of nothing is NaN", () => {
		expect(median([])).toBeNaN();
		expect(median([NaN])).toBeNaN();
	});
});

describe("compareRounds", () => {
	const rounds: Round[] = [
		{ base: { checkout: fig(120, 250, 9) }, change: { checkout: fig(150, 200, 7.5) } },
		// A slow stretch: both slower, the change still ahead.
		{ base: { checkout: fig(90, 400, 11) }, change: { checkout: fig(100, 380, 10) } },
		{ base: { checkout: fig(130, 240, 8) }, change: { checkout: fig(125, 260, 8.2) } },
	];

	test("compares the medians of each build and counts the rounds it used less CPU in", () => {
		const [row] = compareRounds(rounds);
		expect(row.scenario).toBe("checkout");
		expect(row.rounds).toBe(3);
		expect(row.base).toEqual({ rps: 120, p99: 250, cpuMsPerReq: 9, baselineRps: 15000 });
		expect(row.change).toEqual({ rps: 125, p99: 260, cpuMsPerReq: 8.2, baselineRps: 15000 });
		expect(row.ratio).toEqual({ rps: 1.042, p99: 1.04, cpuMsPerReq: 0.911 });
		expect(row.cpuWins).toBe(2);
	});

	test("a scenario one build did not report in a round counts only the rounds both did", () => {
		const partial: Round[] = [...rounds, { base: { checkout: fig(10, 999, 50), list: fig(8000, 10, 0.1) }, change: { list: fig(8800, 9, 0.09) } }];
		const byName = Object.fromEntries(compareRounds(partial).map((r) => [r.scenario, r]));
		expect(byName.checkout.rounds).toBe(3);
		expect(byName.checkout.base.rps).toBe(120);
		expect(byName.list).toMatchObject({ rounds: 1, ratio: { rps: 1.1, cpuMsPerReq: 0.9 }, cpuWins: 1 });
	});

	test("nothing measured by both builds gives no rows", () => {
		expect(compareRounds([{ base: { checkout: fig(1, 1, 1) }, change: {} }])).toEqual([]);
		expect(compareRounds([])).toEqual([]);
	});
});

test("the builds take turns going first", () => {
	expect([0, 1, 2, 3].map(baseRunsFirst)).toEqual([true, false, true, false]);
});

test("reads the single-process rows of a bench report by scenario name", () => {
	const report = {
		results: {
			baseline: [{ name: "bare node:http", rps: 15000, p99: 6, cpuMsPerReq: 0.06 }],
			"single process (metrics on)": [{ name: "checkout (own cart and key per buyer)", rps: 130, p99: 250, cpuMsPerReq: 8.8, baselineRps: 14000, p50: 120 }],
			"single process (metrics off)": [{ name: "GET /api/products?pageSize=20 (cached)", rps: 9000, p99: 8, cpuMsPerReq: 0.1 }],
		},
	};
	expect(singleProcessFigures(report)).toEqual({ "checkout (own cart and key per buyer)": { rps: 130, p99: 250, cpuMsPerReq: 8.8, baselineRps: 14000 } });
	expect(singleProcessFigures({})).toEqual({});
});

test("the table has a row per scenario with both builds' medians and the ratios", () => {
	const table = comparisonTable(compareRounds([{ base: { checkout: fig(100, 200, 8) }, change: { checkout: fig(110, 180, 7.2) } }]), "HEAD~2");
	const lines = table.split("\n");
	expect(lines[0]).toContain("req/s HEAD~2 → this tree");
	expect(lines).toHaveLength(3);
	expect(lines[2]).toBe("| checkout | 1 | 100 → 110 | 1.1 | 200 → 180 | 0.9 | 8 → 7.2 | 0.9 | 1/1 |");
});

test("the table's medians are rounded: the mean of two middle values carries no float noise", () => {
	const rounds: Round[] = [8.99, 8.82].map((cpu) => ({ base: { checkout: fig(130, 260, 9) }, change: { checkout: fig(130, 260, cpu) } }));
	const row = comparisonTable(compareRounds(rounds), "HEAD").split("\n")[2];
	expect(row).toContain("| 9 → 8.905 |");
});
