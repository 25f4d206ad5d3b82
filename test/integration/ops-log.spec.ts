/**
 * The shop's broker hands its logger to the store layer: a failed write or a lock taken over is
 * then logged with the level, time, node and module of every other line, at the LOGLEVEL set.
 */
import { ServiceBroker } from "moleculer";
import { buildBrokerConfig } from "../../moleculer.config";
import { opsLog, setOpsLogger } from "../../lib/ops-log";

describe("the store layer's reports through the broker's logger", () => {
	afterEach(() => {
		setOpsLogger(undefined);
		jest.restoreAllMocks();
	});

	function brokerWith(env: Record<string, string>): ServiceBroker {
		jest.spyOn(console, "log").mockImplementation(() => undefined);
		jest.spyOn(console, "info").mockImplementation(() => undefined);
		const config = buildBrokerConfig({ ...process.env, NODE_ENV: "test", ...env });
		return new ServiceBroker({ ...config, logger: { type: "Console", options: { ...(config.logger as any).options, colors: false, formatter: "full" } }, metrics: false, internalMiddlewares: true, middlewares: [] });
	}

	test("a broker built from the shop's config logs them as its STORE module", () => {
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		brokerWith({ LOGLEVEL: "info", NODEID: "node-7" });
		opsLog.warn("Took over data/.lock from pid 1, which no longer runs.");
		const lines = warn.mock.calls.map((args) => args.map(String).join(" "));
		expect(lines).toEqual([expect.stringMatching(/WARN\s+node-7\/STORE: Took over data\/\.lock from pid 1, which no longer runs\.$/)]);
	});

	test("LOGLEVEL=error keeps its warnings out and lets its errors through", () => {
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		const error = jest.spyOn(console, "error").mockImplementation(() => undefined);
		brokerWith({ LOGLEVEL: "error" });
		opsLog.warn("hidden");
		opsLog.error("items: writing to data/items.db failed (ENOSPC); the change was not made.");
		expect(warn).not.toHaveBeenCalled();
		expect(error.mock.calls.map((args) => args.map(String).join(" "))).toEqual([expect.stringContaining("STORE: items: writing to data/items.db failed")]);
	});
});
