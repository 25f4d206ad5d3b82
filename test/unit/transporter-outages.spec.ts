import type { ServiceBroker } from "moleculer";
import { transporterOutages, watchTransporter } from "../../mixins/transporter-outages";

/** A NATS-like client whose status stream the test feeds. */
function statusStream() {
	const waiting: Array<(r: IteratorResult<{ type: string }>) => void> = [];
	const queued: Array<{ type: string }> = [];
	return {
		push(type: string) {
			const next = waiting.shift();
			if (next) next({ value: { type }, done: false });
			else queued.push({ type });
		},
		status: () => ({
			[Symbol.asyncIterator]: () => ({
				next: () => (queued.length ? Promise.resolve({ value: queued.shift()!, done: false }) : new Promise<IteratorResult<{ type: string }>>((r) => waiting.push(r))),
			}),
		}),
	};
}

function fakeBroker(transit: Record<string, unknown> | undefined, state = { started: true, stopping: false }) {
	const logger = { info: jest.fn(), warn: jest.fn() };
	return { broker: { ...state, transit, getLogger: () => logger } as unknown as ServiceBroker, logger };
}
const tick = () => new Promise((r) => setImmediate(r));

describe("transporterOutages", () => {
	test("a node without a transporter (the embedded default) is never cut off", () => {
		expect(transporterOutages(fakeBroker(undefined).broker)).toEqual([]);
	});

	test("a transporter Moleculer reports closed, once started and not stopping", () => {
		expect(transporterOutages(fakeBroker({ connected: false }).broker)).toEqual(["transporter: disconnected"]);
		expect(transporterOutages(fakeBroker({ connected: true }).broker)).toEqual([]);
		expect(transporterOutages(fakeBroker({ connected: false }, { started: false, stopping: false }).broker)).toEqual([]);
		expect(transporterOutages(fakeBroker({ connected: false }, { started: true, stopping: true }).broker)).toEqual([]);
	});

	test("NATS's own reconnecting: disconnected from its 'disconnect' to its 'reconnect', logged once each way", async () => {
		const client = statusStream();
		const { broker, logger } = fakeBroker({ connected: true, tx: { client } });
		watchTransporter(broker);
		client.push("pingTimer");
		await tick();
		expect(transporterOutages(broker)).toEqual([]);

		client.push("disconnect");
		client.push("reconnecting");
		client.push("disconnect");
		await tick();
		expect(transporterOutages(broker)).toEqual(["transporter: disconnected"]);
		expect(logger.warn).toHaveBeenCalledTimes(1);
		expect(logger.warn).toHaveBeenCalledWith(expect.stringContaining("Lost the connection to the transporter"));

		client.push("reconnect");
		await tick();
		expect(transporterOutages(broker)).toEqual([]);
		expect(logger.info).toHaveBeenCalledWith(expect.stringMatching(/^The transporter connection is back after \d+\.\d s\.$/));
	});

	test("a transporter without a status stream is left to Moleculer's flag", () => {
		const { broker } = fakeBroker({ connected: true, tx: { client: {} } });
		expect(() => watchTransporter(broker)).not.toThrow();
		expect(transporterOutages(broker)).toEqual([]);
	});
});
