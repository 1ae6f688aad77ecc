// Type-aware lint: typescript-eslint's recommended type-checked rules over the
// sources, tests and benchmarks (`npm run lint`, part of the test command).
// Tuned to what the code already follows: each rule turned off or relaxed
// below says why.

import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.bench-cache/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // commander hands each action its options as `any`, and `new Map()` / `new Array(n)` are `any`-typed until
      // assigned: values from outside are checked by hand where they enter (index/validate.ts, the CLI's parsers).
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      // An async function without await is how an interface's method turns a throw into a rejection.
      '@typescript-eslint/require-await': 'off',
      // Control characters in patterns are what the code looks for (names and strings it refuses or escapes).
      'no-control-regex': 'off',
      // A failure caught as `unknown` is stored and rethrown as it came; once checked against undefined it is
      // typed `{} | null`, which this rule takes for a non-error.
      '@typescript-eslint/only-throw-error': 'off',
      // Rejecting with a caught `unknown` or an AbortSignal's `any` reason passes the failure on as it came.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
      // `self` is the receiver inside a generator function, which cannot be an arrow.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
      // A leading underscore marks a parameter or binding that is there for its position only.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // node:test awaits the promises test() and describe() return; nothing else may float.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      // Tests and benchmarks read JSON (CLI output, stats, manifests) and call into it directly.
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // A test may reject with the result it then inspects (a command's exit status and output).
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'module' },
  },
);
