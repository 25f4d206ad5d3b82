/** mixins/throttled-warnings.middleware.ts: Moleculer's "no node for this action" warning, once per interval per action. */
import { ServiceBroker } from "moleculer";
import { ThrottledWarningsMiddleware } from "../../mixins/throttled-warnings.middleware";

test("a call finding no node warns once per interval per action, then says how many were left out; other warnings pass", async () => {
	const lines: string[] = [];
	jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
	const broker = new ServiceBroker({ logger: { type: "Console", options: { level: "warn", colors: false, formatter: "simple" } }, middlewares: [ThrottledWarningsMiddleware(100)] });
	await broker.start();
	try {
		const call = (action: string) => broker.call(action).catch((err: Error) => err.name);
		for (let i = 0; i < 5; i++) expect(await call("orders.list")).toBe("ServiceNotFoundError");
		await call("cart.get");
		broker.logger.warn("something else");
		broker.logger.warn("something else");
		expect(lines.filter((l) => l.includes("orders.list"))).toEqual([expect.stringContaining("Service 'orders.list' is not registered.")]);
		expect(lines.filter((l) => l.includes("cart.get"))).toHaveLength(1);
		expect(lines.filter((l) => l.includes("something else"))).toHaveLength(2);
		await new Promise((r) => setTimeout(r, 120));
		await call("orders.list");
		expect(lines.filter((l) => l.includes("orders.list"))[1]).toMatch(/Service 'orders\.list' is not registered\. \(4 more like it in the last 0 s\)/);
	} finally {
		await broker.stop();
		jest.restoreAllMocks();
	}
});
