/**
 * A call to another node that timed out no longer holds up the caller's graceful stop: Moleculer's
 * tracker kept it "running" for good (the pending request dropped, its promise never settled).
 */
import { ServiceBroker } from "moleculer";
import { buildBrokerConfig } from "../../moleculer.config";

function node(nodeID: string, namespace: string): ServiceBroker {
	const config = buildBrokerConfig({ ...process.env, NODE_ENV: "test", LOGLEVEL: "fatal" });
	return new ServiceBroker({
		...config,
		nodeID,
		namespace,
		transporter: "Fake",
		logger: false,
		metrics: { enabled: false },
		tracing: { enabled: false },
		requestTimeout: 300,
		retryPolicy: { enabled: false },
		tracking: { enabled: true, shutdownTimeout: 5000 },
		replOptions: undefined,
	} as any);
}

describe("a call to another node that timed out", () => {
	test("is no longer tracked as running by its caller, whose stop does not wait for it", async () => {
		const namespace = `timed-out-${process.pid}`;
		const caller = node("caller", namespace);
		const callee = node("callee", namespace);
		let release: () => void = () => undefined;
		callee.createService({ name: "slow", actions: { hang: () => new Promise<void>((resolve) => (release = resolve)) } });
		await Promise.all([caller.start(), callee.start()]);
		// The callee's answers are lost (a frozen process, a transporter outage): its own timeout's error never arrives either.
		(callee.transit as unknown as { sendResponse: () => Promise<void> }).sendResponse = () => Promise.resolve();
		try {
			await caller.waitForServices("slow", 5000);
			await expect(caller.call("slow.hang")).rejects.toMatchObject({ name: "RequestTimeoutError" });
			const tracked = () => (caller as unknown as { _trackedContexts: unknown[] })._trackedContexts.length;
			await new Promise((resolve) => setTimeout(resolve, 1500));
			expect(tracked()).toBe(0);
			const started = Date.now();
			await caller.stop();
			expect(Date.now() - started).toBeLessThan(2000);
		} finally {
			release();
			await Promise.all([caller.stop(), callee.stop()]);
		}
	}, 20_000);
});
