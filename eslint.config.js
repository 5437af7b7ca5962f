// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'var/**', 'coverage/**', 'bin/**', 'vendor/**', 'dist/**', 'bench/out/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Money and quantities are exact: parseFloat/Number on them is a bug, so ban the tempting helpers.
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'round', message: 'Use roundDecimal() from src/core/rounding with a named mode.' },
        { object: 'Number', property: 'parseFloat', message: 'Quantities and prices are exact decimals: use parseDecimal().' },
      ],
      'no-restricted-globals': ['error', { name: 'parseFloat', message: 'Quantities and prices are exact decimals: use parseDecimal().' }],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
