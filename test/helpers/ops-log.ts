import { setOpsLogger } from "../../lib/ops-log";

/** The store layer's reports (lib/ops-log), caught for assertions instead of printed. */
export function catchOpsLog(): { info: jest.Mock; warn: jest.Mock; error: jest.Mock } {
	const log = { info: jest.fn(), warn: jest.fn(), error: jest.fn() };
	setOpsLogger(log);
	return log;
}

// Each test starts with the console reporter again.
afterEach(() => setOpsLogger(undefined));
