import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_FCM_API_BASE, DEFAULT_TOKEN_URI, FCM_SCOPE, FCM_TOKEN_PATTERN, classifyFcmError, fcmMessage, jwtAssertion, readFcmConfig } from "../../lib/fcm";

const { publicKey, privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
const key = { type: "service_account", project_id: "my-shop", client_email: "push@my-shop.iam.gserviceaccount.com", private_key: pem };

describe("FCM settings", () => {
	test("unset: no FCM", () => expect(readFcmConfig({})).toBeNull());

	test("the service account's JSON, inline or as a file; the project from the key unless FCM_PROJECT_ID names one", () => {
		expect(readFcmConfig({ FCM_SERVICE_ACCOUNT: JSON.stringify(key) })).toEqual({
			account: { projectId: "my-shop", clientEmail: key.client_email, privateKey: pem, tokenUri: DEFAULT_TOKEN_URI },
			apiBase: DEFAULT_FCM_API_BASE,
		});
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fcm-"));
		try {
			const file = path.join(dir, "key.json");
			fs.writeFileSync(file, JSON.stringify({ ...key, token_uri: "http://127.0.0.1:9/token" }));
			expect(readFcmConfig({ FCM_SERVICE_ACCOUNT: file, FCM_PROJECT_ID: "other", FCM_API_BASE: "http://127.0.0.1:9/" })).toEqual({
				account: { projectId: "other", clientEmail: key.client_email, privateKey: pem, tokenUri: "http://127.0.0.1:9/token" },
				apiBase: "http://127.0.0.1:9",
			});
		} finally {
			fs.rmSync(dir, { recursive: true, force: true });
		}
	});

	test.each([
		["a key file that is not there", { FCM_SERVICE_ACCOUNT: "/no/such/key.json" }, /FCM_SERVICE_ACCOUNT .*reading "\/no\/such\/key.json" failed/],
		["a key that is not JSON", { FCM_SERVICE_ACCOUNT: "{not json" }, /FCM_SERVICE_ACCOUNT is not JSON/],
		["a key without client_email", { FCM_SERVICE_ACCOUNT: JSON.stringify({ ...key, client_email: undefined }) }, /client_email and private_key/],
		["a key without project_id, and no FCM_PROJECT_ID", { FCM_SERVICE_ACCOUNT: JSON.stringify({ ...key, project_id: undefined }) }, /FCM_PROJECT_ID is needed/],
		["a private_key that is not PEM", { FCM_SERVICE_ACCOUNT: JSON.stringify({ ...key, private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }) }, /private_key is not an RSA private key/],
		["an EC private_key", { FCM_SERVICE_ACCOUNT: JSON.stringify({ ...key, private_key: crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) }) }, /not an RSA private key.*ec key/],
		["a token_uri without its scheme", { FCM_SERVICE_ACCOUNT: JSON.stringify({ ...key, token_uri: "oauth2.googleapis.com/token" }) }, /token_uri must be an http\(s\) address/],
		["an FCM_API_BASE without its scheme", { FCM_SERVICE_ACCOUNT: JSON.stringify(key), FCM_API_BASE: "127.0.0.1:9" }, /^FCM_API_BASE must be an http:\/\/ or https:\/\/ URL/],
		["FCM_PROJECT_ID alone", { FCM_PROJECT_ID: "my-shop" }, /FCM_PROJECT_ID is set without FCM_SERVICE_ACCOUNT/],
	])("%s stops the start, naming what is wrong", (_what, env, message) => {
		expect(() => readFcmConfig(env as NodeJS.ProcessEnv)).toThrow(message);
	});
});

describe("FCM sign-in and messages", () => {
	test("the sign-in JWT is RS256 by the service account's key, for FCM's scope at the token endpoint, valid an hour", () => {
		const account = readFcmConfig({ FCM_SERVICE_ACCOUNT: JSON.stringify(key) })!.account;
		const [head, claims, signature] = jwtAssertion(account, 1_700_000_000).split(".");
		expect(JSON.parse(Buffer.from(head, "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
		expect(JSON.parse(Buffer.from(claims, "base64url").toString())).toEqual({ iss: key.client_email, scope: FCM_SCOPE, aud: DEFAULT_TOKEN_URI, iat: 1_700_000_000, exp: 1_700_003_600 });
		expect(crypto.verify("sha256", Buffer.from(`${head}.${claims}`), publicKey, Buffer.from(signature, "base64url"))).toBe(true);
		expect(crypto.verify("sha256", Buffer.from(`${head}.${claims}x`), publicKey, Buffer.from(signature, "base64url"))).toBe(false);
	});

	test("a message: what the system shows, the link as data, and our id so a repeat replaces the notification", () => {
		const body = fcmMessage("tok:1", { title: "Order 1001 shipped", body: "On its way", url: "https://shop.example.com/orders/o1", tag: "n1" }, 3600) as any;
		expect(body.message).toMatchObject({
			token: "tok:1",
			notification: { title: "Order 1001 shipped", body: "On its way" },
			data: { notificationId: "n1", url: "https://shop.example.com/orders/o1" },
			android: { ttl: "3600s", notification: { tag: "n1" } },
			apns: { headers: { "apns-collapse-id": "n1" } },
		});
		expect(Number(body.message.apns.headers["apns-expiration"]) - Date.now() / 1000).toBeGreaterThan(3590);
		// Data values are strings only: no url key at all without a link.
		expect((fcmMessage("tok:1", { title: "t", body: "b", url: null, tag: "n2" }, 60) as any).message.data).toEqual({ notificationId: "n2" });
	});

	test("FCM's tokens are letters, digits, _, - and :", () => {
		expect(FCM_TOKEN_PATTERN.test("dQw4w9WgXcQ:APA91bH-x_y")).toBe(true);
		for (const bad of ["with space", "semi;colon", "ünïcode", ""]) expect(FCM_TOKEN_PATTERN.test(bad)).toBe(false);
	});
});

describe("what an FCM error means", () => {
	const fcmError = (status: number, errorCode: string | null, message = "", extra: object[] = []) => ({
		error: { code: status, message, status: "X", details: [...(errorCode ? [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode }] : []), ...extra] },
	});
	test.each([
		["the app was uninstalled", 404, "gone", fcmError(404, "UNREGISTERED", "Requested entity was not found.")],
		["a token of another Firebase project", 403, "gone", fcmError(403, "SENDER_ID_MISMATCH")],
		["a token FCM cannot read", 400, "gone", fcmError(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token")],
		["a field violation on the token", 400, "gone", { error: { code: 400, message: "Invalid value", status: "INVALID_ARGUMENT", details: [{ "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.token" }] }] } }],
		["a data value of the wrong type", 400, "refused", { error: { code: 400, message: "Invalid value at 'message.data[0].value'", status: "INVALID_ARGUMENT", details: [{ "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.data[0].value" }] }] } }],
		["our access token refused", 401, "unauthorized", { error: { code: 401, message: "Request had invalid authentication credentials.", status: "UNAUTHENTICATED" } }],
		["APNs refusing Firebase's credentials for the iOS app", 401, "transient", fcmError(401, "THIRD_PARTY_AUTH_ERROR")],
		["over quota", 429, "transient", fcmError(429, "QUOTA_EXCEEDED")],
		["FCM down", 503, "transient", fcmError(503, "UNAVAILABLE")],
		["FCM's own error", 500, "transient", fcmError(500, "INTERNAL")],
		["no body at all", 502, "transient", null],
	])("%s (%i) → %s", (_what, status, kind, body) => {
		const failure = classifyFcmError(status, body);
		expect(failure.kind).toBe(kind);
		expect(failure.reason).toContain(`FCM ${status}`);
	});

	test("the reason names FCM's error code and message", () => {
		expect(classifyFcmError(404, fcmError(404, "UNREGISTERED", "Requested entity was not found.")).reason).toBe("FCM 404 UNREGISTERED: Requested entity was not found.");
	});
});
