// ESLint flat config: typescript-eslint with type information, plus the rules that keep the
// rooms of the code apart (no Node built-ins or activity code inside workflows/; model/ is the
// ground floor and imports nothing from the project).
import tseslint from 'typescript-eslint';
import importPlugin from 'eslint-plugin-import';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.ferry/**', 'bench/results/**', 'bin/**', '*.js', '*.mjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    plugins: { import: importPlugin },
    settings: { 'import/resolver': { node: { extensions: ['.ts', '.js'] } } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'import/no-cycle': 'error',
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'workflows/ is deterministic: no Node built-ins' },
            {
              group: ['fs', 'path', 'os', 'crypto', 'child_process', 'net', 'http'],
              message: 'workflows/ is deterministic: no Node built-ins',
            },
            {
              group: ['../activities', '../activities/*', '!../activities/types'],
              allowTypeImports: true,
              message: 'workflows/ may import activity types only',
            },
          ],
          paths: [
            {
              name: '../temporal-config',
              message: 'import ../temporal-config/presets: the environment is read outside workflows',
            },
            { name: '../temporal-config/environment', message: 'the environment is read outside workflows' },
          ],
        },
      ],
    },
  },
  {
    files: ['model/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['../*', '../**'], message: 'model/ is the ground floor: it imports nothing from the project' },
            { group: ['node:*'], message: 'model/ runs in the workflow sandbox too: no Node built-ins' },
          ],
        },
      ],
    },
  },
);
