import fs from "node:fs";
import path from "node:path";
import { escapeHtml, parseTemplate, renderTemplate, stripControlChars, templateVariables } from "../../lib/template-render";
import { NOTIFICATION_KINDS, templateVars } from "../../lib/notification-plan";

describe("template rendering", () => {
	test.each([
		["html", "<p>{{name}}</p>", { name: `<img src=x onerror="alert('1')">` }, "<p>&lt;img src&#61;x onerror&#61;&quot;alert(&#39;1&#39;)&quot;&gt;</p>"],
		["html", "{{a}}&{{b}}", { a: "Tom & Jerry", b: "`x`" }, "Tom &amp; Jerry&&#96;x&#96;"],
		["text", "Hi {{name}}!", { name: "<b>Ann</b>" }, "Hi <b>Ann</b>!"],
		["text", "{{name}}", { name: "Ann\u001b[31m\u0000\r\nSmith" }, "Ann[31m Smith"],
		["line", "Subject: {{name}}", { name: "Ann\r\nBcc: evil@example.com" }, "Subject: Ann Bcc: evil@example.com"],
		["html", "{{name}}", { name: "A\u0007B" }, "AB"],
		// A value never starts a line of its own in the text of a mail, whatever breaks it carries.
		["text", "Hi {{name}}, welcome", { name: "Ann\n\nYour account is locked: call +1 555 0100\n" }, "Hi Ann Your account is locked: call +1 555 0100 , welcome"],
		["text", "Hi {{name}},", { name: "Ann\u2028Line\u2029Para\u0085Nel\u000bVt\u000cFf\tTab\rCr" }, "Hi Ann Line Para Nel Vt Ff Tab Cr,"],
		["html", "<p>{{name}}</p>", { name: "Ann\r\n<b>x</b>" }, "<p>Ann &lt;b&gt;x&lt;/b&gt;</p>"],
		["text", "{{order.number}} / {{order.missing}} / {{nothing}}", { order: { number: "SO-1" } }, "SO-1 /  / "],
		["text", "{{n}} {{yes}} {{obj}} {{when}}", { n: 0, yes: true, obj: { a: 1 }, when: new Date("2024-01-02T03:04:05Z") }, "0 true  2024-01-02T03:04:05.000Z"],
	] as const)("%s mode: %s", (mode, template, vars, expected) => {
		expect(renderTemplate(template, vars as Record<string, unknown>, mode)).toBe(expected);
	});

	test.each([
		["{{#items}}[{{name}}x{{qty}}]{{/items}}", { items: [{ name: "a", qty: 1 }, { name: "b", qty: 2 }] }, "[ax1][bx2]"],
		["{{#items}}[{{name}}]{{/items}}", { items: [] }, ""],
		["{{#items}}{{.}},{{/items}}", { items: ["x", "y"] }, "x,y,"],
		["{{#code}}Code: {{code}}{{/code}}", { code: "TR1" }, "Code: TR1"],
		["{{#code}}Code: {{code}}{{/code}}", { code: "" }, ""],
		["{{^code}}none{{/code}}", { code: null }, "none"],
		["{{^code}}none{{/code}}", { code: "x" }, ""],
		// An item's field wins over the outer one of the same name; outer fields stay reachable.
		["{{#items}}{{name}}@{{shop}} {{/items}}", { name: "outer", shop: "S", items: [{ name: "inner" }] }, "inner@S "],
		["{{#user}}{{first}}{{/user}}", { user: { first: "Ann" } }, "Ann"],
	])("sections: %s", (template, vars, expected) => {
		expect(renderTemplate(template, vars, "text")).toBe(expected);
	});

	test("a section tag alone on its line takes the line with it", () => {
		const t = "Items:\n{{#items}}\n- {{name}}\n{{/items}}\nEnd\n";
		expect(renderTemplate(t, { items: [{ name: "a" }, { name: "b" }] }, "text")).toBe("Items:\n- a\n- b\nEnd\n");
		expect(renderTemplate(t, { items: [] }, "text")).toBe("Items:\nEnd\n");
	});

	test.each(["{{#a}}open", "{{/a}}", "{{#a}}{{/b}}", "{{#a}}{{#b}}{{/a}}{{/b}}"])("unbalanced %s is refused at parse time", (t) => {
		expect(() => parseTemplate(t)).toThrow(/template/);
	});

	test("helpers", () => {
		expect(escapeHtml(`&<>"'\`=`)).toBe("&amp;&lt;&gt;&quot;&#39;&#96;&#61;");
		expect(stripControlChars("a\tb\nc\u007fd\u009be")).toBe("a b cde");
		expect(stripControlChars("a\r\n\nb")).toBe("a b");
		expect(stripControlChars("a\r\u0000\nb")).toBe("a b");
		expect(templateVariables("{{a}} {{b.c}} {{#items}}{{name}}{{/items}} {{^d}}{{/d}}")).toEqual(["a", "b", "d", "items"]);
	});

	test("every notification template parses and gets every variable it reads", () => {
		const dir = path.join(__dirname, "../../templates/notifications");
		const payload = { eventId: "orders:1", userId: "u1", email: "a@example.com", firstName: "Ann", verificationToken: "t", resetToken: "r", orderId: "o1", number: "SO-1", items: [], subtotal: 1, discount: 0, shipping: 0, total: 1, currency: "USD", trackingNumber: "T", refundedAmount: 1, amount: 1, totalRefunded: 1, to: "shipped" };
		const contact = { userId: "u1", email: "a@example.com", phone: null, firstName: "Ann" };
		for (const kind of NOTIFICATION_KINDS) {
			const vars = templateVars(kind, payload, contact, { shopName: "Shop", storefrontUrl: "http://shop" });
			for (const suffix of [".subject.txt", ".html", ".txt", ".sms.txt"]) {
				const file = path.join(dir, kind + suffix);
				if (suffix === ".sms.txt" && !fs.existsSync(file)) continue;
				const names = templateVariables(fs.readFileSync(file, "utf8"));
				expect({ file: kind + suffix, missing: names.filter((n) => !(n in vars)) }).toEqual({ file: kind + suffix, missing: [] });
			}
		}
	});
});
