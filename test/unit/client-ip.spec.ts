import { clientAddress } from "../../lib/client-ip";
import { readConfig, trustedProxyHops } from "../../lib/config";

describe("client address behind trusted proxies", () => {
	const socket = "10.0.0.9";

	test.each([
		// [X-Forwarded-For, trusted hops, client]
		[undefined, 0, socket],
		["203.0.113.5", 0, socket],
		[undefined, 1, socket],
		["", 1, socket],
		// One proxy (nginx $proxy_add_x_forwarded_for, AWS ALB): the entry it appended, whatever the client sent before it.
		["198.51.100.7", 1, "198.51.100.7"],
		["203.0.113.1, 198.51.100.7", 1, "198.51.100.7"],
		["203.0.113.1, 127.0.0.1", 1, "127.0.0.1"],
		["203.0.113.1,198.51.100.7", 1, "198.51.100.7"],
		// Two proxies (a CDN, then a load balancer): the entry the CDN appended.
		["203.0.113.1, 198.51.100.7, 192.0.2.4", 2, "198.51.100.7"],
		// Fewer entries than proxies: the leftmost is as far as we can see.
		["198.51.100.7", 3, "198.51.100.7"],
		["198.51.100.7, 192.0.2.4", 5, "198.51.100.7"],
		// Empty entries (", , x") take no place in the chain.
		[" , ,198.51.100.7", 1, "198.51.100.7"],
		// The header given twice, as an array.
		[["203.0.113.1", "198.51.100.7"], 1, "198.51.100.7"],
	])("X-Forwarded-For %j with %d trusted hop(s) → %s", (forwardedFor, hops, client) => {
		expect(clientAddress(forwardedFor, socket, hops)).toBe(client);
	});

	test("no socket address (the connection is gone): 'unknown', one bucket for all such requests", () => {
		expect(clientAddress(undefined, undefined, 0)).toBe("unknown");
		expect(clientAddress("198.51.100.7", undefined, 0)).toBe("unknown");
	});
});

describe("TRUST_PROXY", () => {
	test.each([
		[undefined, 0],
		["", 0],
		["false", 0],
		["FALSE", 0],
		["0", 0],
		["no", 0],
		["true", 1],
		["Yes", 1],
		["1", 1],
		[" 2 ", 2],
		["10", 10],
	])("%j → %d hops", (value, hops) => {
		expect(trustedProxyHops(value)).toBe(hops);
		expect(readConfig({ TRUST_PROXY: value }).trustProxy).toBe(hops);
	});

	test.each(["on", "-1", "1.5", "2x", "loopback", "10.0.0.0/8", "99999999999999999999"])("%j refuses to start, naming TRUST_PROXY", (value) => {
		expect(() => readConfig({ TRUST_PROXY: value })).toThrow(/TRUST_PROXY/);
	});
});
