/** A node started from the shop's config that hosts no service (moleculer-runner without SERVICEDIR) says so. */
import { ServiceBroker } from "moleculer";
import { buildBrokerConfig } from "../../moleculer.config";

describe("a node that hosts no service", () => {
	afterEach(() => jest.restoreAllMocks());

	async function warningsOf(withService: boolean): Promise<string[]> {
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		jest.spyOn(console, "info").mockImplementation(() => undefined);
		const config = buildBrokerConfig({ ...process.env, NODE_ENV: "test", LOGLEVEL: "warn", SERVICEDIR: "" });
		const broker = new ServiceBroker({ ...config, logger: { type: "Console", options: { level: "warn", colors: false } }, metrics: false, middlewares: [] });
		if (withService) broker.createService({ name: "greeter", actions: { hello: () => "hi" } });
		await broker.start();
		await broker.stop();
		return warn.mock.calls.map((args) => args.map(String).join(" "));
	}

	test("warns, naming SERVICEDIR and SERVICES", async () => {
		expect(await warningsOf(false)).toEqual([expect.stringContaining("This node hosts no service: set SERVICEDIR=dist/services")]);
	});

	test("a node with a service does not", async () => {
		expect((await warningsOf(true)).filter((line) => line.includes("hosts no service"))).toEqual([]);
	});
});
