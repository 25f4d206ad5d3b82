/**
 * Where the store layer and start-up code report what an operator must see (a failed write, a
 * data file repaired, a lock taken over, a generated secret). That code runs below any service, so
 * it cannot reach `this.logger`: the broker hands its logger here when it is created, and the
 * messages then carry the level, time, node and module like every other line. Before a broker
 * exists (scripts, the config's own checks) they go to the console with the level and time in front.
 */
export interface OpsLogger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

function consoleLine(level: "info" | "warn" | "error"): (...args: unknown[]) => void {
	return (...args) => console[level](`[${new Date().toISOString()}] ${level.toUpperCase().padEnd(5)} STORE:`, ...args);
}

const fallback: OpsLogger = { info: consoleLine("info"), warn: consoleLine("warn"), error: consoleLine("error") };
let current: OpsLogger = fallback;

/** Reports go to this logger from now on; `undefined` puts back the console one. */
export function setOpsLogger(logger: OpsLogger | undefined): void {
	current = logger ?? fallback;
}

export const opsLog: OpsLogger = {
	info: (...args) => current.info(...args),
	warn: (...args) => current.warn(...args),
	error: (...args) => current.error(...args),
};
