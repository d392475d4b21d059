import type { Example } from './prompt';

/** The seed's mission spec: what to inspect, what to measure, how to report, within which limits. */
export const MISSION_SCHEMA = {
  type: 'object',
  properties: {
    targets: { type: 'array', items: { type: 'string', maxLength: 48 }, minItems: 1, maxItems: 8 },
    measurements: { type: 'array', items: { type: 'string', maxLength: 48 }, maxItems: 8 },
    output_format: { type: 'string', enum: ['report', 'table', 'alert', 'json'] },
    constraints: {
      type: 'array',
      maxItems: 8,
      items: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 32 },
          value: { type: 'number' },
          unit: { type: 'string', maxLength: 16 },
        },
        required: ['name', 'value', 'unit'],
        additionalProperties: false,
      },
    },
  },
  required: ['targets', 'measurements', 'output_format', 'constraints'],
  additionalProperties: false,
};

export const MISSION_INSTRUCTION = [
  'You turn an operator command for an inspection robot into a mission spec.',
  'targets: the things to inspect, in the words of the command.',
  'measurements: the quantities to read (temperature, pressure, vibration, leaks, ...).',
  'output_format: "report" unless the command asks for a table, an alert or JSON.',
  'constraints: every limit in the command as {name, value, unit} with a number for value.',
  'Use only what the command says. Answer with the JSON object only.',
].join('\n');

export const MISSION_EXAMPLES: Example[] = [
  {
    input:
      'Inspect the valve network, report anomalies, and suggest corrective actions. Max travel 1.5 m per minute, battery budget 30 minutes, avoid areas above 80 °C.',
    output: {
      targets: ['valve network'],
      measurements: ['anomalies'],
      output_format: 'report',
      constraints: [
        { name: 'max_travel_speed', value: 1.5, unit: 'm/min' },
        { name: 'battery_budget', value: 30, unit: 'min' },
        { name: 'max_area_temperature', value: 80, unit: '°C' },
      ],
    },
  },
];

/** The system prompt: the instruction, then the schema the answer must follow. */
export function systemPrompt(instruction: string, schema: unknown): string {
  return `${instruction.trim()}\n\nThe answer is one JSON object that follows this JSON Schema:\n${JSON.stringify(schema)}`;
}
