/** A stop that waits for requests in flight says which, every few seconds. */
import { ServiceBroker } from "moleculer";
import { StopNoticeMiddleware, runningRequests, STOP_REPORT_MS } from "../../mixins/stop-notice.middleware";

test("a stop still waiting names the requests it waits for, and their age", async () => {
	const broker = new ServiceBroker({ logger: false, tracking: { enabled: true, shutdownTimeout: 10_000 }, middlewares: [StopNoticeMiddleware()] });
	broker.createService({
		name: "slow",
		actions: {
			run: (ctx) => new Promise((r) => setTimeout(r, (ctx.params as { ms: number }).ms)),
		},
	});
	await broker.start();
	const warn = jest.spyOn(broker.logger, "warn");
	const running = broker.call("slow.run", { ms: STOP_REPORT_MS + 700 }, { timeout: 20_000 });
	const quick = broker.call("slow.run", { ms: 10 }, { timeout: 20_000 });
	expect(runningRequests(broker)).toEqual([expect.stringMatching(/^slow\.run for \d+ ms$/), expect.stringMatching(/^slow\.run for \d+ ms$/)]);
	await quick;
	const stopped = broker.stop();
	await running;
	await stopped;
	const reports = warn.mock.calls.map((c) => String(c[0])).filter((m) => m.startsWith("Stopping:"));
	expect(reports).toEqual([expect.stringMatching(/^Stopping: still waiting for 1 request\(s\): slow\.run for (\d{4}) ms$/)]);
	expect(runningRequests(broker)).toEqual([]);
});
