import crypto from "node:crypto";
import { generateVAPIDKeys } from "web-push";
import { DEFAULT_PUSH_HOSTS, canonicalPushEndpoint, parsePushHosts, pushKeysProblem, pushPayloadJson, type PushHost } from "../../lib/web-push";
import { readNotificationConfig } from "../../adapters/channels";

const browserKey = crypto.createECDH("prime256v1");
browserKey.generateKeys();
const p256dh = browserKey.getPublicKey().toString("base64url");
/** The problem with an endpoint, or null when it is taken. */
const pushEndpointProblem = (endpoint: string, hosts: readonly PushHost[]) => {
	const checked = canonicalPushEndpoint(endpoint, hosts);
	return "problem" in checked ? checked.problem : null;
};
const auth = Buffer.alloc(16, 3).toString("base64url");

describe("push services a subscription may name", () => {
	const browsers = parsePushHosts(undefined);

	test.each([
		["https://fcm.googleapis.com/fcm/send/dXw:APA91b", null],
		["https://updates.push.services.mozilla.com/wpush/v2/gAAAA", null],
		["https://web.push.apple.com/QGuQyavXutnMH", null],
		["https://wns2-by3p.notify.windows.com/w/?token=BQYAAA", null],
		["https://FCM.googleapis.com/fcm/send/x", null],
		["http://fcm.googleapis.com/fcm/send/x", "must be an https URL"],
		["https://fcm.googleapis.com.evil.example/x", expect.stringMatching(/^must be on a browser push service/)],
		["https://evilfcm.googleapis.com.example/x", expect.stringMatching(/^must be on a browser push service/)],
		["https://169.254.169.254/latest/meta-data", expect.stringMatching(/^must be on a browser push service/)],
		["https://user:pw@fcm.googleapis.com/x", "must not carry credentials"],
		["file:///etc/passwd", "must be an https URL"],
		["fcm.googleapis.com/fcm/send/x", "must be a URL"],
		// Another port of a push service's host is not the push service.
		["https://fcm.googleapis.com:8443/fcm/send/x", "must be on the push service's standard https port"],
		["https://fcm.googleapis.com:443/fcm/send/x", null],
	])("%s → %p", (endpoint, problem) => {
		expect(pushEndpointProblem(endpoint, browsers)).toEqual(problem);
	});

	test("spellings of one endpoint are one: kept in canonical form, without a fragment", () => {
		const local = parsePushHosts("http://127.0.0.1:8999");
		for (const spelling of ["http://127.0.0.1:8999/push/a", "HTTP://127.0.0.1:8999/push/a", "http://127.1:8999/push/a", "http://127.0.0.1:8999/push/a#x", "http://127.0.0.1:8999/push/./a"]) {
			expect(canonicalPushEndpoint(spelling, local)).toEqual({ endpoint: "http://127.0.0.1:8999/push/a" });
		}
		expect(canonicalPushEndpoint("https://FCM.GoogleAPIs.com:443/fcm/send/x", browsers)).toEqual({ endpoint: "https://fcm.googleapis.com/fcm/send/x" });
	});

	test("WEB_PUSH_HOSTS replaces the list: host names (https, with subdomains) and exact http origins", () => {
		const hosts = parsePushHosts(" push.example.com , http://127.0.0.1:8999 ");
		expect(hosts).toEqual([{ host: "push.example.com" }, { host: "127.0.0.1", insecureOrigin: "http://127.0.0.1:8999" }]);
		expect(pushEndpointProblem("https://eu.push.example.com/s/1", hosts)).toBeNull();
		expect(pushEndpointProblem("http://127.0.0.1:8999/s/1", hosts)).toBeNull();
		// The http origin is that port only, and not over https (a different service).
		expect(pushEndpointProblem("http://127.0.0.1:8998/s/1", hosts)).toBe("must be an https URL");
		expect(pushEndpointProblem("https://127.0.0.1:8999/s/1", hosts)).not.toBeNull();
		expect(pushEndpointProblem("https://127.0.0.1/s/1", hosts)).toMatch(/^must be on a browser push service/);
		expect(pushEndpointProblem("https://fcm.googleapis.com/fcm/send/x", hosts)).toMatch(/^must be on a browser push service/);
		expect(parsePushHosts("  ").map((h) => h.host)).toEqual(DEFAULT_PUSH_HOSTS);
	});

	test.each([["push.example.com/path"], ["https://push.example.com"], ["*.example.com"], ["http://"]])("WEB_PUSH_HOSTS=%s stops the start, naming it", (value) => {
		expect(() => parsePushHosts(value)).toThrow(/^WEB_PUSH_HOSTS: /);
	});
});

describe("a subscription's keys", () => {
	test("the browser's P-256 key and 16-byte secret pass", () => {
		expect(pushKeysProblem({ p256dh, auth })).toBeNull();
	});

	test.each([
		[{ p256dh: p256dh.slice(0, 40), auth }, "p256dh"],
		[{ p256dh: Buffer.alloc(65, 2).toString("base64url"), auth }, "p256dh"],
		[{ p256dh: `${p256dh}!`, auth }, "p256dh"],
		// The right size and prefix, but no point of the curve: it could never encrypt a message.
		[{ p256dh: Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 9)]).toString("base64url"), auth }, "p256dh"],
		[{ p256dh, auth: Buffer.alloc(12).toString("base64url") }, "auth"],
		[{ p256dh, auth: "not base64 at all" }, "auth"],
	])("%j: %s is named", (keys, field) => {
		expect(pushKeysProblem(keys)).toMatchObject({ field });
	});
});

describe("the payload", () => {
	test("title, body, the page to open and the message's id, as JSON", () => {
		expect(JSON.parse(pushPayloadJson({ title: "Order SH-1 confirmed", body: "Shop: order SH-1 is confirmed", url: "https://shop.example/orders/1", tag: "m1" }))).toEqual({
			title: "Order SH-1 confirmed",
			body: "Shop: order SH-1 is confirmed",
			url: "https://shop.example/orders/1",
			tag: "m1",
		});
	});

	test("long texts are cut between characters, keeping the whole within what push services take", () => {
		const json = pushPayloadJson({ title: "🎉".repeat(500), body: "é".repeat(5_000), url: null, tag: "m1" });
		expect(Buffer.byteLength(json)).toBeLessThan(2_500);
		const { title, body } = JSON.parse(json);
		expect(title).toMatch(/^(🎉)+…$/);
		expect(body).toMatch(/^é+…$/);
	});
});

describe("Web Push settings", () => {
	const keys = generateVAPIDKeys();

	test("unset: keys made by the service, the sender's address as the contact, the browsers' push services", () => {
		expect(readNotificationConfig({ NOTIFY_FROM_EMAIL: "orders@tea.example" }).webPush).toEqual({ keys: null, subject: "mailto:orders@tea.example", hosts: parsePushHosts(undefined) });
	});

	test("a key pair and a contact of one's own are taken", () => {
		const cfg = readNotificationConfig({ VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: ` ${keys.privateKey} `, VAPID_SUBJECT: "https://tea.example/contact" }).webPush;
		expect(cfg).toMatchObject({ keys, subject: "https://tea.example/contact" });
	});

	test.each([
		[{ VAPID_PUBLIC_KEY: keys.publicKey }, /^VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY go together \(Web Push\): VAPID_PRIVATE_KEY missing/],
		[{ VAPID_PRIVATE_KEY: keys.privateKey }, /VAPID_PUBLIC_KEY missing/],
		[{ VAPID_PUBLIC_KEY: keys.privateKey, VAPID_PRIVATE_KEY: keys.privateKey }, /^VAPID_PUBLIC_KEY must be a P-256 public key/],
		[{ VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: keys.publicKey }, /^VAPID_PRIVATE_KEY must be a P-256 private key/],
		[{ VAPID_PUBLIC_KEY: generateVAPIDKeys().publicKey, VAPID_PRIVATE_KEY: keys.privateKey }, /^VAPID_PUBLIC_KEY is not the public key of VAPID_PRIVATE_KEY/],
		[{ VAPID_PUBLIC_KEY: Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 9)]).toString("base64url"), VAPID_PRIVATE_KEY: keys.privateKey }, /^VAPID_PUBLIC_KEY is not the public key/],
		[{ VAPID_SUBJECT: "http://tea.example" }, /^VAPID_SUBJECT must be a mailto: or https: address/],
		[{ VAPID_SUBJECT: "orders@tea.example" }, /^VAPID_SUBJECT/],
		[{ WEB_PUSH_HOSTS: "push.example.com/x" }, /^WEB_PUSH_HOSTS/],
	])("%j stops the start, naming the variable", (env, message) => {
		expect(() => readNotificationConfig(env)).toThrow(message);
	});
});
