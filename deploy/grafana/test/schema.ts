// What a dashboard of deploy/grafana/dashboards may hold, in Grafana's published types
// (@grafana/schema, the version of the Grafana image in deploy/compose.yaml). check.mjs writes
// each dashboard JSON into generated/dashboards.ts as a value of type `DashboardJson`, and tsc
// refuses a field the schema does not know, a required one missing, or a value of the wrong
// kind. Stricter than Dashboard alone in two ways: each panel's options and custom field
// config are those of its panel type, and each query is a Prometheus query.
import type { Dashboard, DataQuery, FieldConfig, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// JSON holds an enum's value, not the enum: `"table"` where the type says LegendDisplayMode.
type Json<T> = T extends string
  ? `${T}`
  : T extends Array<infer U>
    ? Array<Json<U>>
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

// The query model of Grafana's Prometheus data source (its plugin's PromQuery; @grafana/schema
// does not publish it): the fields these dashboards use.
interface PromQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  exemplar?: boolean;
  editorMode?: 'code' | 'builder';
}

// A panel of type K with options O and custom field config C (nothing else under `custom`).
type PanelOf<K extends string, O, C> = Omit<Panel, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
  type: K;
  options: O;
  fieldConfig: Omit<FieldConfigSource, 'defaults'> & { defaults: Omit<FieldConfig, 'custom'> & { custom?: C } };
  targets: PromQuery[];
};

type QueryPanel =
  | PanelOf<'timeseries', timeseries.Options, timeseries.FieldConfig>
  | PanelOf<'stat', stat.Options, never>
  | PanelOf<'bargauge', bargauge.Options, never>
  | PanelOf<'table', table.Options, table.FieldConfig>;

export type DashboardJson = Json<Omit<Dashboard, 'panels'> & { panels: Array<QueryPanel | (RowPanel & { type: 'row' })> }>;
