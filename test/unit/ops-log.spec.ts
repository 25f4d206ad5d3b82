import { opsLog, setOpsLogger } from "../../lib/ops-log";

describe("opsLog: the store layer's reports", () => {
	afterEach(() => {
		setOpsLogger(undefined);
		jest.restoreAllMocks();
	});

	test("without a broker's logger, each level goes to the console with its level and the time in front", () => {
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		const error = jest.spyOn(console, "error").mockImplementation(() => undefined);
		opsLog.warn("took over the lock");
		opsLog.error("a write failed");
		expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] WARN {2}STORE:$/), "took over the lock");
		expect(error).toHaveBeenCalledWith(expect.stringMatching(/^\[[^\]]+\] ERROR STORE:$/), "a write failed");
	});

	test("a logger handed over takes every level, until it is taken back", () => {
		const logger = { info: jest.fn(), warn: jest.fn(), error: jest.fn() };
		setOpsLogger(logger);
		opsLog.info("a", 1);
		opsLog.warn("b");
		opsLog.error("c", new Error("d"));
		expect(logger.info).toHaveBeenCalledWith("a", 1);
		expect(logger.warn).toHaveBeenCalledWith("b");
		expect(logger.error).toHaveBeenCalledWith("c", expect.any(Error));

		setOpsLogger(undefined);
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		opsLog.warn("e");
		expect(logger.warn).toHaveBeenCalledTimes(1);
		expect(warn).toHaveBeenCalledWith(expect.stringContaining("WARN"), "e");
	});
});

describe("LOG_FORMAT", () => {
	afterEach(() => jest.restoreAllMocks());

	/** The lines a broker configured from `env` writes for one logged error with a stack. */
	async function linesFor(env: Record<string, string>): Promise<string[]> {
		const { buildBrokerConfig } = require("../../moleculer.config") as typeof import("../../moleculer.config");
		const { ServiceBroker } = require("moleculer") as typeof import("moleculer");
		const written: string[] = [];
		jest.spyOn(console, "error").mockImplementation((...args: unknown[]) => void written.push(args.map(String).join(" ")));
		const config = buildBrokerConfig({ NODE_ENV: "test", LOGLEVEL: "info", NODEID: "n1", ...env });
		const broker = new ServiceBroker({ ...config, metrics: false, tracing: false, transporter: null, middlewares: [] });
		const err = new Error("provider said: line one\nline two");
		broker.getLogger("probe").error("Delivering failed:", err);
		return written;
	}

	test("json: one JSON object per line, the error's message and stack inside it; full: date and node id in front", async () => {
		const json = await linesFor({ LOG_FORMAT: "json" });
		expect(json).toHaveLength(1);
		expect(json[0]).not.toContain("\n");
		expect(JSON.parse(json[0])).toMatchObject({ level: "error", nodeID: "n1", mod: "probe", msg: expect.stringContaining("line one\nline two") });
		const full = await linesFor({});
		expect(full[0]).toMatch(/^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] ERROR n1\/PROBE: Delivering failed:/);
	});
});
