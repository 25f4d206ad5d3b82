/** NodeRestartMiddleware: requests pending on a node's old run fail at once when a new run of the same node ID appears. */
import { Errors, ServiceBroker } from "moleculer";
import { NodeRestartMiddleware } from "../../mixins/node-restart.middleware";
import { within } from "../helpers/wait";

jest.setTimeout(20_000);

let namespace = 0;
const brokers: ServiceBroker[] = [];

afterEach(async () => {
	await Promise.all(brokers.splice(0).map((b) => b.stop().catch(() => undefined)));
});

function start(nodeID: string, ns: string, schema?: any) {
	const broker = new ServiceBroker({ logger: false, transporter: "Fake", namespace: ns, nodeID, middlewares: [NodeRestartMiddleware()], requestTimeout: 8000, retryPolicy: { enabled: false } });
	if (schema) broker.createService(schema);
	brokers.push(broker);
	return broker.start().then(() => broker);
}

/** The run dies without a word: it sends nothing more and hears nothing (a SIGKILL; its heartbeats stop, but the others notice only after the timeout). */
function crash(broker: ServiceBroker) {
	const tx = (broker.transit as any).tx;
	tx.send = () => Promise.resolve();
	return tx.disconnect();
}

/** A run of node "stock-1" that takes every call and never answers, as a process that died mid-call. */
const hung = {
	name: "stock",
	actions: {
		reserve: () => new Promise(() => undefined),
		count: () => 7,
	},
};

describe("NodeRestartMiddleware", () => {
	test("a call pending on a run that was replaced by a new run of the same node ID is rejected, not left to time out", async () => {
		const ns = `node-restart-${++namespace}`;
		const caller = await start("gateway-1", ns);
		const old = await start("stock-1", ns, hung);
		await caller.waitForServices("stock", 5000, 20);
		const pending = caller.call("stock.reserve").catch((e) => e);
		await new Promise((r) => setTimeout(r, 100));
		await crash(old);
		// The same node ID, a new run (its own instanceID): what a restarted container looks like before the old run's heartbeat stops.
		await start("stock-1", ns, { ...hung, actions: { ...hung.actions, reserve: () => "reserved" } });
		const err = await within(pending, 4000, "still pending");
		expect(err).toBeInstanceOf(Errors.RequestRejectedError);
		// The new run answers.
		await expect(caller.call("stock.count")).resolves.toBe(7);
	});

	test("an update of the same run (a service added) leaves its pending calls alone", async () => {
		const ns = `node-restart-${++namespace}`;
		const caller = await start("gateway-1", ns);
		const stock = await start("stock-1", ns, hung);
		await caller.waitForServices("stock", 5000, 20);
		let settled = false;
		const pending = caller.call("stock.reserve", {}, { timeout: 2000 }).finally(() => (settled = true)).catch((e) => e);
		await new Promise((r) => setTimeout(r, 100));
		await stock.createService({ name: "prices", actions: { get: () => 1 } });
		await caller.waitForServices("prices", 5000, 20);
		expect(settled).toBe(false);
		expect(await pending).toBeInstanceOf(Errors.RequestTimeoutError);
	});
});
