import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", "data/", ".jest-cache/", "coverage/", "*.js", "scripts/*.js"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		// Plain CommonJS service fixtures and build scripts run on Node.
		files: ["**/*.js"],
		languageOptions: {
			sourceType: "commonjs",
			globals: { require: "readonly", module: "writable", exports: "writable", process: "readonly", console: "readonly", __dirname: "readonly", Buffer: "readonly", setTimeout: "readonly", clearTimeout: "readonly", URL: "readonly" },
		},
	},
	{
		rules: {
			"@typescript-eslint/no-explicit-any": "off",
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
			"@typescript-eslint/no-require-imports": "off",
			"no-console": "off",
		},
	},
);
