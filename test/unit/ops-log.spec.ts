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
