/* global window, RED, $ */
/*
 * llm-plan's action catalogue as a form: one row per action (name, description) with its
 * parameters (type, limits, allowed values, required). Each row edits the keys it shows in a copy of
 * the action it was made from, so that what the form does not show (a parameter's maxLength or
 * pattern, additionalProperties) goes back into the JSON untouched. The checks are the node's own
 * (lib/llm/plan.ts, through the check-catalogue endpoint); the form itself only refuses what it
 * cannot turn into JSON (a number field holding text, an empty or repeated name).
 */
(function () {
  'use strict';
  if (window.EdgeLlmCatalogueForm) return;
  // Node-RED loads the resources scripts in no fixed order: form-view.js is looked up when a form is built.
  var F;
  var NS = 'node-red-contrib-edge-llm/llm-plan:llm-plan.';
  var TYPES = ['string', 'number', 'integer', 'boolean'];
  var t = function (key, vars) {
    return RED._(NS + 'form.' + key, vars);
  };

  // Row helpers both forms share (form-view.js), bound to this form's strings when it is built.
  var fail, obj, textOf, numOf, enumOf, input, rows, kept, textValue;

  /** Builds the form in `container`; returns show(catalogue) and read(reader) for EdgeLlmFormView. */
  function build(container, changed) {
    F = window.EdgeLlmFormView;
    var h = F.rowHelpers(t);
    fail = h.fail;
    obj = h.obj;
    textOf = h.textOf;
    numOf = h.numOf;
    enumOf = h.enumOf;
    input = h.input;
    rows = h.rows;
    kept = h.kept;
    textValue = h.textValue;
    container.empty();
    var note = $('<div class="form-tips edge-llm-catalogue-default">').text(t('default')).appendTo(container);
    var actions = $('<ol class="edge-llm-catalogue">')
      .appendTo(container)
      .editableList({
        addButton: t('add.action'),
        height: 'auto',
        sortable: true,
        removable: true,
        addItem: addAction,
        removeItem: changed,
      });
    var catalogue;

    function addAction(row, index, data) {
      var item = data.item || {};
      var where = t('action', { n: index + 1 });
      var l = $('<div class="form-row edge-llm-form-line">').appendTo(row);
      input(l, 'edge-llm-catalogue-name', '30%', t('placeholder.name')).val(
        textOf(item.name, where + ' name'),
      );
      input(l, 'edge-llm-catalogue-description', '62%', t('placeholder.description')).val(
        textOf(item.description, where + ' description'),
      );
      var params = obj(item.params, where + ' params');
      if (item.params !== undefined && params.type !== 'object') fail(where, t('params-not-object'));
      var props = obj(params.properties, where + ' params.properties');
      var required = params.required === undefined ? [] : params.required;
      if (!Array.isArray(required)) fail(where + ' params.required', t('not-list'));
      $('<div class="edge-llm-form-caption">').text(t('caption.params')).appendTo(row);
      var list = $('<ol class="edge-llm-catalogue-params">')
        .appendTo(row)
        .editableList({
          addButton: t('add.param'),
          height: 'auto',
          sortable: true,
          removable: true,
          addItem: addParam,
          removeItem: changed,
        });
      Object.keys(props).forEach(function (p) {
        list.editableList('addItem', {
          name: p,
          rule: obj(props[p], where + ' ' + p),
          required: required.indexOf(p) !== -1,
          where: where + ' ' + p,
        });
      });
      kept(row, $.extend({}, item, item.params ? params : {}), [
        'name',
        'description',
        'params',
        'type',
        'properties',
        'required',
      ]);
      row.data('params', list);
      note.hide();
      changed();
    }

    function addParam(row, index, data) {
      var rule = data.rule || { type: 'string' };
      var where = data.where || '';
      var l = $('<div class="form-row edge-llm-form-line">').appendTo(row);
      input(l, 'edge-llm-catalogue-param-name', '22%', t('placeholder.param')).val(data.name || '');
      var type = $('<select class="edge-llm-catalogue-param-type">').css('width', '90px').appendTo(l);
      var types = TYPES.slice();
      if (rule.type !== undefined && types.indexOf(rule.type) === -1) {
        if (typeof rule.type !== 'string') fail(where + ' type', JSON.stringify(rule.type));
        types.push(rule.type);
      }
      if (rule.type === undefined) types.unshift('');
      types.forEach(function (v) {
        $('<option>')
          .val(v)
          .text(v || t('any'))
          .appendTo(type);
      });
      type.val(rule.type === undefined ? '' : rule.type);
      input(l, 'edge-llm-catalogue-param-min', '60px', t('placeholder.min')).val(
        numOf(rule.minimum, where + ' minimum'),
      );
      input(l, 'edge-llm-catalogue-param-max', '60px', t('placeholder.max')).val(
        numOf(rule.maximum, where + ' maximum'),
      );
      input(l, 'edge-llm-catalogue-param-enum', '25%', t('placeholder.enum')).val(
        enumOf(rule.enum, rule.type, where + ' enum'),
      );
      var req = $('<span class="edge-llm-form-check">').appendTo(l);
      $('<input type="checkbox" class="edge-llm-catalogue-param-required">')
        .css({ width: 'auto', margin: '0 4px 0 0', verticalAlign: 'middle' })
        .prop('checked', !!data.required)
        .appendTo(req);
      $('<span>')
        .text(' ' + t('required'))
        .appendTo(req);
      kept(row, rule, ['type', 'minimum', 'maximum', 'enum']);
      changed();
    }

    function show(value) {
      if (value !== undefined && !Array.isArray(value)) throw new F.Unshowable(t('not-a-catalogue'));
      catalogue = value;
      actions.editableList('empty');
      note.show();
      (value || []).forEach(function (item, i) {
        actions.editableList('addItem', { item: obj(item, t('action', { n: i + 1 })) });
      });
    }

    function read(reader) {
      var msg = {
        empty: t('problem.empty-name'),
        duplicate: t('problem.duplicate'),
      };
      var out = [];
      var names = {};
      rows(actions).forEach(function (r, i) {
        var before = r.data('data').item || {};
        var item = F.clone(before);
        var nameEl = r.find('.edge-llm-catalogue-name');
        item.name = reader.name(nameEl, names, msg);
        var desc = r.find('.edge-llm-catalogue-description');
        F.put(item, 'description', textValue(desc, before.description));
        reader.at('[' + i + ']', nameEl).at('[' + i + '].description', desc);
        var list = r.data('params');
        var prows = rows(list);
        if (prows.length || before.params) {
          var params = item.params || { type: 'object' };
          var shownBefore = Object.keys((before.params && before.params.properties) || {});
          var props = {};
          var pnames = {};
          var checked = {};
          prows.forEach(function (pr) {
            var pd = pr.data('data');
            var pnameEl = pr.find('.edge-llm-catalogue-param-name');
            var pname = reader.name(pnameEl, pnames, msg);
            var prule = F.clone(pd.rule) || {};
            var type = pr.find('.edge-llm-catalogue-param-type').val();
            F.put(prule, 'type', type === '' ? undefined : type);
            var min = pr.find('.edge-llm-catalogue-param-min');
            var max = pr.find('.edge-llm-catalogue-param-max');
            var en = pr.find('.edge-llm-catalogue-param-enum');
            F.put(prule, 'minimum', reader.number(min, t('problem.number')));
            F.put(prule, 'maximum', reader.number(max, t('problem.number')));
            var text = String(en.val()).trim();
            var values;
            if (text) {
              values = text.split(',').map(function (s) {
                s = s.trim();
                if (type === 'number' || type === 'integer') {
                  if (!RED.validators.number()(s)) reader.problem(en, t('problem.number'));
                  return Number(s);
                }
                if (type === 'boolean') {
                  if (s !== 'true' && s !== 'false') reader.problem(en, t('problem.boolean'));
                  return s === 'true';
                }
                return s;
              });
            } else if (Array.isArray((pd.rule || {}).enum) && pd.rule.enum.length === 0) values = [];
            F.put(prule, 'enum', values);
            var pat = '[' + i + '].params.' + pname;
            reader
              .at(pat, pnameEl)
              .at(pat + '.minimum', min)
              .at(pat + '.maximum', max)
              .at(pat + '.enum', en)
              .at(pat + '.type', pr.find('.edge-llm-catalogue-param-type'));
            props[pname] = prule;
            checked[pname] = pr.find('.edge-llm-catalogue-param-required').prop('checked');
          });
          F.put(params, 'properties', prows.length || params.properties ? props : undefined);
          // The required list keeps its order and any name the form does not show.
          var req = [];
          (Array.isArray(params.required) ? params.required : []).forEach(function (n) {
            if (Object.prototype.hasOwnProperty.call(checked, n)) {
              if (checked[n]) req.push(n);
            } else if (shownBefore.indexOf(n) === -1) req.push(n);
          });
          Object.keys(checked).forEach(function (n) {
            if (checked[n] && req.indexOf(n) === -1) req.push(n);
          });
          F.put(
            params,
            'required',
            req.length || (Array.isArray(params.required) && params.required.length === 0) ? req : undefined,
          );
          if (!before.params) params.additionalProperties = false;
          item.params = params;
        }
        out.push(item);
      });
      if (out.length === 0 && catalogue === undefined) return undefined;
      return out;
    }

    return { show: show, read: read };
  }

  window.EdgeLlmCatalogueForm = { build: build };
})();
