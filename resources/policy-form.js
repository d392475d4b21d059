/* global window, RED, $ */
/*
 * The guardrail's policy as a form: the policy's name, a table of actions (parameter rules,
 * approval), limits (rates, windows, rate of change), interlocks and approvals. Each row edits the
 * keys it shows in a copy of the rule it was made from, so that whatever the form does not show
 * (devices, moves, costs, a site map, budgets) goes back into the JSON untouched. The checks are the
 * guardrail's own: the node's check-policy endpoint (the JSON Schema and cross-references of
 * lib/guardrail/policy.ts); the form itself only refuses what it cannot turn into JSON (a number
 * field holding text, an empty or repeated name).
 */
(function () {
  'use strict';
  if (window.EdgeLlmPolicyForm) return;
  // Node-RED loads the resources scripts in no fixed order: form-view.js is looked up when a form is built.
  var F;
  var NS = 'node-red-contrib-edge-llm/guardrail:guardrail.';
  var OPS = ['<', '<=', '>', '>=', '==', '!=', 'in', 'notIn'];
  var TYPES = ['number', 'integer', 'string', 'boolean'];
  var t = function (key, vars) {
    return RED._(NS + 'form.' + key, vars);
  };

  // Row helpers both forms share (form-view.js), bound to this form's strings when it is built.
  var fail, obj, textOf, numOf, enumOf, input, rows, kept, textValue;
  function arr(v, where) {
    if (v === undefined) return [];
    if (!Array.isArray(v)) fail(where, t('not-list'));
    v.forEach(function (x, i) {
      obj(x, where + '[' + i + ']');
    });
    return v;
  }
  function listOf(v, where) {
    var s = F.listText(v);
    if (s === undefined) fail(where, t('not-plain-list'));
    return s;
  }
  /** A value the form shows in a select or a checkbox: one of `allowed`, or absent. */
  function oneOf(v, allowed, where) {
    if (v !== undefined && allowed.indexOf(v) === -1) fail(where, JSON.stringify(v));
    return v;
  }

  function select(row, cls, values, labels, width) {
    var s = $('<select>').addClass(cls).css({ width: width }).appendTo(row);
    values.forEach(function (v, i) {
      $('<option>')
        .val(v)
        .text(labels ? labels[i] : v)
        .appendTo(s);
    });
    return s;
  }
  function line(row) {
    return $('<div class="form-row edge-llm-form-line">').appendTo(row);
  }
  function label(row, key) {
    return $('<span class="edge-llm-form-label">')
      .text(t('label.' + key))
      .appendTo(row);
  }
  function section(container, key) {
    var s = $('<div class="edge-llm-form-section">').appendTo(container);
    $('<h4>')
      .text(t('section.' + key))
      .appendTo(s);
    return s;
  }
  function list(parent, cls, addKey, addItem, removeItem) {
    return $('<ol>')
      .addClass(cls)
      .appendTo(parent)
      .editableList({
        addButton: t('add.' + addKey),
        height: 'auto',
        sortable: true,
        removable: true,
        addItem: addItem,
        removeItem: removeItem,
      });
  }
  /** Keeps a boolean the form shows as a checkbox: true, or false where the JSON said false, or absent. */
  function flag(on, before) {
    return on ? true : before === false ? false : undefined;
  }
  /** Blank text: absent, unless the JSON held the empty text. */
  function listValue(el, before) {
    var v = String(el.val()).trim();
    if (!v) return Array.isArray(before) && before.length === 0 ? [] : undefined;
    return v.split(',').map(function (s) {
      return s.trim();
    });
  }
  /** An array the form built: absent when empty, unless the JSON held an empty one. */
  function arrayValue(items, before) {
    return items.length ? items : Array.isArray(before) && before.length === 0 ? [] : undefined;
  }

  var uid = 0;

  /** Builds the form in `container`; returns show(policy) and read(reader) for EdgeLlmFormView. */
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
    var top = section(container, 'policy');
    var topLine = line(top);
    label(topLine, 'name');
    var pName = input(topLine, 'edge-llm-policy-name', '30%');
    label(topLine, 'version');
    var pVersion = input(topLine, 'edge-llm-policy-version', '60px');
    var descLine = line(top);
    label(descLine, 'description');
    var pDescription = input(descLine, 'edge-llm-policy-description', '75%');

    var actions = list(
      section(container, 'actions'),
      'edge-llm-actions',
      'action',
      addAction,
      function (data) {
        rows(limits).forEach(function (r) {
          if (r.find('.edge-llm-limit-scope').val() === data.uid)
            limits.editableList('removeItem', r.data('data'));
        });
        refreshScopes();
        changed();
      },
    );
    var limits = list(section(container, 'limits'), 'edge-llm-limits', 'limit', addLimit, changed);
    var interlocks = list(
      section(container, 'interlocks'),
      'edge-llm-interlocks',
      'interlock',
      addInterlock,
      changed,
    );
    var approvals = section(container, 'approvals');
    var apLine = line(approvals);
    label(apLine, 'approvalClasses');
    var apClasses = input(apLine, 'edge-llm-approval-classes', '30%', t('placeholder.list'));
    label(apLine, 'timeoutSeconds');
    var apTimeout = input(apLine, 'edge-llm-approval-timeout', '60px');
    label(apLine, 'maxPending');
    var apPending = input(apLine, 'edge-llm-approval-pending', '60px');
    var keptTop = $('<div class="form-tips edge-llm-form-kept">').appendTo(container);
    var policy = {};

    function addAction(row, index, data) {
      data.uid = data.uid || 'a' + ++uid;
      var rule = data.rule || {};
      oneOf(rule.requiresApproval, [true, false], data.name + '.requiresApproval');
      var head = line(row);
      var name = input(head, 'edge-llm-action-name', '30%', t('placeholder.action'))
        .val(data.name || '')
        .on('input change', refreshScopes);
      input(head, 'edge-llm-action-description', '60%', t('placeholder.description')).val(
        textOf(rule.description, data.name + '.description'),
      );
      var ap = line(row);
      label(ap, 'approval');
      var mode = select(
        ap,
        'edge-llm-action-approval',
        ['no', 'always', 'when'],
        [t('approval.no'), t('approval.always'), t('approval.when')],
        '200px',
      );
      label(ap, 'classes');
      input(ap, 'edge-llm-action-classes', '25%', t('placeholder.list')).val(
        listOf(rule.classes, data.name + '.classes'),
      );
      var conditions = $('<div class="edge-llm-conditions">').appendTo(row);
      $('<div class="edge-llm-form-caption">').text(t('caption.conditions')).appendTo(conditions);
      var when = list(conditions, 'edge-llm-approval-when', 'condition', addCondition, changed);
      arr(rule.approvalWhen, data.name + '.approvalWhen').forEach(function (c) {
        when.editableList('addItem', { rule: c });
      });
      mode
        .val(rule.requiresApproval === true ? 'always' : rule.approvalWhen !== undefined ? 'when' : 'no')
        .on('change', function () {
          conditions.toggle(mode.val() !== 'no');
        })
        .trigger('change');
      $('<div class="edge-llm-form-caption">').text(t('caption.params')).appendTo(row);
      var params = list(row, 'edge-llm-params', 'param', addParam, changed);
      Object.keys(obj(rule.params, data.name + '.params')).forEach(function (p) {
        params.editableList('addItem', { name: p, rule: obj(rule.params[p], data.name + '.params.' + p) });
      });
      kept(row, rule, [
        'description',
        'params',
        'requiresApproval',
        'approvalWhen',
        'classes',
        'rateLimits',
        'rateOfChange',
      ]);
      row.data('parts', { name: name, mode: mode, when: when, params: params });
      name.trigger('change');
    }

    function addParam(row, index, data) {
      var rule = data.rule || { type: 'number' };
      var where = 'params.' + data.name;
      var l = line(row);
      input(l, 'edge-llm-param-name', '16%', t('placeholder.param')).val(data.name || '');
      var type = select(l, 'edge-llm-param-type', TYPES, null, '90px');
      if (TYPES.indexOf(rule.type) === -1) fail(where + '.type', JSON.stringify(rule.type));
      oneOf(rule.required, [true, false], where + '.required');
      type.val(rule.type);
      input(l, 'edge-llm-param-min', '50px', t('placeholder.min')).val(numOf(rule.min, where + '.min'));
      input(l, 'edge-llm-param-max', '50px', t('placeholder.max')).val(numOf(rule.max, where + '.max'));
      input(l, 'edge-llm-param-unit', '45px', t('placeholder.unit')).val(textOf(rule.unit, where + '.unit'));
      input(l, 'edge-llm-param-enum', '18%', t('placeholder.enum')).val(
        enumOf(rule.enum, rule.type, where + '.enum'),
      );
      var req = $('<span class="edge-llm-form-check">').appendTo(l);
      $('<input type="checkbox" class="edge-llm-param-required">')
        .css({ width: 'auto', margin: '0 4px 0 0', verticalAlign: 'middle' })
        .prop('checked', rule.required === true)
        .appendTo(req);
      $('<span>')
        .text(' ' + t('label.required'))
        .appendTo(req);
      kept(row, rule, ['type', 'min', 'max', 'unit', 'enum', 'required']);
      changed();
    }

    function addCondition(row, index, data) {
      var rule = data.rule || { op: '>' };
      oneOf(rule.op, OPS, 'approvalWhen.op');
      var l = line(row);
      input(l, 'edge-llm-condition-param', '25%', t('placeholder.param')).val(
        textOf(rule.param, 'approvalWhen.param'),
      );
      select(l, 'edge-llm-condition-op', OPS, null, '70px').val(rule.op || '>');
      var v = $('<input type="text" class="edge-llm-condition-value">').css('width', '40%').appendTo(l);
      try {
        F.valueInput(v, rule.value);
      } catch (e) {
        fail('approvalWhen.value', e.message);
      }
      kept(row, rule, ['param', 'op', 'value']);
      changed();
    }

    function addLimit(row, index, data) {
      var rule = data.rule || { per: 'action', max: 1, windowSeconds: 1 };
      var kind = data.kind || ('capacity' in rule ? 'bucket' : 'window');
      if (kind !== 'change') oneOf(rule.per, ['action', 'device', 'all'], 'rateLimits.per');
      var l = line(row);
      var scope = $('<select class="edge-llm-limit-scope">').css('width', '25%').appendTo(l);
      scope.data(
        'want',
        data.scope === undefined ? (actions.editableList('length') ? firstActionUid() : '') : data.scope,
      );
      var k = select(
        l,
        'edge-llm-limit-kind',
        ['window', 'bucket', 'change'],
        [t('limit.window'), t('limit.bucket'), t('limit.change')],
        '150px',
      ).val(kind);
      var per = select(
        l,
        'edge-llm-limit-per',
        ['action', 'device', 'all'],
        [t('per.action'), t('per.device'), t('per.all')],
        '120px',
      );
      per.val(rule.per || 'action');
      var f = line(row);
      var w = $('<span class="edge-llm-limit-window">').appendTo(f);
      label(w, 'max');
      input(w, 'edge-llm-limit-max', '60px').val(kind === 'window' ? numOf(rule.max, 'rateLimits.max') : '');
      label(w, 'windowSeconds');
      input(w, 'edge-llm-limit-windowSeconds', '60px').val(
        numOf(rule.windowSeconds, 'rateLimits.windowSeconds'),
      );
      var b = $('<span class="edge-llm-limit-bucket">').appendTo(f);
      label(b, 'capacity');
      input(b, 'edge-llm-limit-capacity', '60px').val(numOf(rule.capacity, 'rateLimits.capacity'));
      label(b, 'refillPerSecond');
      input(b, 'edge-llm-limit-refill', '60px').val(
        numOf(rule.refillPerSecond, 'rateLimits.refillPerSecond'),
      );
      var c = $('<span class="edge-llm-limit-change">').appendTo(f);
      label(c, 'param');
      input(c, 'edge-llm-limit-param', '90px').val(
        kind === 'change' ? textOf(rule.param, 'rateOfChange.param') : '',
      );
      label(c, 'maxPerSecond');
      input(c, 'edge-llm-limit-maxPerSecond', '60px').val(
        kind === 'change' ? numOf(rule.maxPerSecond, 'rateOfChange.maxPerSecond') : '',
      );
      label(f, 'by');
      input(f, 'edge-llm-limit-by', '20%', t('placeholder.list')).val(listOf(rule.by, 'by'));
      k.on('change', function () {
        w.toggle(k.val() === 'window');
        b.toggle(k.val() === 'bucket');
        c.toggle(k.val() === 'change');
        per.toggle(k.val() !== 'change');
      }).trigger('change');
      kept(row, rule, [
        'per',
        'by',
        'max',
        'windowSeconds',
        'capacity',
        'refillPerSecond',
        'param',
        'maxPerSecond',
      ]);
      refreshScopes();
      changed();
    }

    function addInterlock(row, index, data) {
      var rule = data.rule || { require: { source: 'flow', op: '==', value: true } };
      var at = 'interlocks.' + (rule.id || '');
      var l = line(row);
      input(l, 'edge-llm-interlock-id', '25%', t('placeholder.interlock')).val(textOf(rule.id, at + '.id'));
      label(l, 'forActions');
      var when = obj(rule.when, at + '.when');
      var actionsText =
        typeof when.action === 'string' ? when.action : listOf(when.action, at + '.when.action');
      input(l, 'edge-llm-interlock-actions', '35%', t('placeholder.allActions')).val(actionsText);
      var conditions = Array.isArray(rule.require) ? rule.require : [rule.require];
      if (conditions.length === 1) {
        var c = obj(conditions[0], at + '.require');
        oneOf(c.op, OPS, at + '.require.op');
        var l2 = line(row);
        label(l2, 'liveValue');
        var path = $('<input type="text" class="edge-llm-interlock-path">').css('width', '35%').appendTo(l2);
        path.typedInput({
          types: ['msg', 'flow', 'global'],
          typeField: $('<input type="hidden">').appendTo(l2),
        });
        if (c.source !== undefined && ['msg', 'flow', 'global'].indexOf(c.source) === -1)
          fail(at + '.require.source', JSON.stringify(c.source));
        path.typedInput('type', c.source || 'flow');
        path.typedInput('value', textOf(c.path, at + '.require.path'));
        select(l2, 'edge-llm-interlock-op', OPS, null, '70px').val(c.op || '==');
        var v = $('<input type="text" class="edge-llm-interlock-value">').css('width', '25%').appendTo(l2);
        try {
          F.valueInput(v, c.value);
        } catch (e) {
          fail(at + '.require.value', e.message);
        }
        var l3 = line(row);
        label(l3, 'maxAgeSeconds');
        input(l3, 'edge-llm-interlock-maxAge', '60px').val(
          numOf(c.maxAgeSeconds, at + '.require.maxAgeSeconds'),
        );
        label(l3, 'timestampPath');
        input(l3, 'edge-llm-interlock-timestamp', '30%', t('placeholder.timestamp')).val(
          textOf(c.timestampPath, at + '.require.timestampPath'),
        );
        kept(row, c, ['source', 'path', 'op', 'value', 'maxAgeSeconds', 'timestampPath']);
      } else {
        $('<div class="form-tips">')
          .text(t('conditions', { n: conditions.length }))
          .appendTo(row);
      }
      var l4 = line(row);
      label(l4, 'message');
      input(l4, 'edge-llm-interlock-message', '70%').val(textOf(rule.message, at + '.message'));
      kept(row, rule, ['id', 'when', 'require', 'message']);
      if (rule.when) kept(row, rule.when, ['action'], 'when.');
      changed();
    }

    function firstActionUid() {
      var r = rows(actions)[0];
      return r ? r.data('data').uid : '';
    }

    /** The limits' "applies to" lists follow the actions' names as they are typed. */
    function refreshScopes() {
      var options = [{ v: '', l: t('scope.policy') }].concat(
        rows(actions).map(function (r) {
          return { v: r.data('data').uid, l: String(r.find('.edge-llm-action-name').first().val()) || '?' };
        }),
      );
      container.find('.edge-llm-limit-scope').each(function () {
        var s = $(this);
        var want = s.data('want') !== undefined ? s.data('want') : s.val();
        s.removeData('want').empty();
        options.forEach(function (o) {
          $('<option>').val(o.v).text(o.l).appendTo(s);
        });
        s.val(want);
      });
    }

    function show(p) {
      if (!p || typeof p !== 'object' || Array.isArray(p)) throw new F.Unshowable(t('not-a-policy'));
      if (!p.actions || typeof p.actions !== 'object' || Array.isArray(p.actions))
        throw new F.Unshowable(t('no-actions'));
      policy = p;
      pName.val(textOf(p.name, 'name'));
      pVersion.val(textOf(p.version, 'version'));
      pDescription.val(textOf(p.description, 'description'));
      actions.editableList('empty');
      limits.editableList('empty');
      interlocks.editableList('empty');
      var limitRows = [];
      arr(p.rateLimits, 'rateLimits').forEach(function (r) {
        limitRows.push({ scope: '', rule: r });
      });
      Object.keys(p.actions).forEach(function (name) {
        var data = { name: name, rule: obj(p.actions[name], 'actions.' + name), uid: 'a' + ++uid };
        actions.editableList('addItem', data);
        arr(data.rule.rateLimits, name + '.rateLimits').forEach(function (r) {
          limitRows.push({ scope: data.uid, rule: r });
        });
        arr(data.rule.rateOfChange, name + '.rateOfChange').forEach(function (r) {
          limitRows.push({ scope: data.uid, rule: r, kind: 'change' });
        });
      });
      limitRows.forEach(function (d) {
        limits.editableList('addItem', d);
      });
      arr(p.interlocks, 'interlocks').forEach(function (r) {
        interlocks.editableList('addItem', { rule: r });
      });
      var ap = obj(p.approval, 'approval');
      apClasses.val(listOf(ap.classes, 'approval.classes'));
      apTimeout.val(numOf(ap.timeoutSeconds, 'approval.timeoutSeconds'));
      apPending.val(numOf(ap.maxPending, 'approval.maxPending'));
      var others = Object.keys(p).filter(function (k) {
        return (
          ['name', 'version', 'description', 'actions', 'rateLimits', 'interlocks', 'approval'].indexOf(k) ===
          -1
        );
      });
      keptTop.text(others.length ? t('kept', { keys: others.join(', ') }) : '').toggle(others.length > 0);
    }

    function read(reader) {
      var msg = {
        empty: t('problem.empty-name'),
        duplicate: t('problem.duplicate'),
        number: t('problem.number'),
        json: t('problem.json'),
      };
      var out = F.clone(policy) || {};
      F.put(out, 'name', textValue(pName, policy.name));
      reader.at('policy.name', pName);
      F.put(out, 'version', textValue(pVersion, policy.version));
      reader.at('policy.version', pVersion);
      F.put(out, 'description', textValue(pDescription, policy.description));
      reader.at('policy.description', pDescription);

      var acts = {};
      var names = {};
      var byUid = {};
      rows(actions).forEach(function (r) {
        var data = r.data('data');
        var parts = r.data('parts');
        var name = reader.name(parts.name, names, msg);
        var at = 'policy.actions.' + name;
        reader.at(at, parts.name);
        var rule = F.clone(data.rule) || {};
        var desc = r.find('.edge-llm-action-description').first();
        F.put(rule, 'description', textValue(desc, (data.rule || {}).description));
        reader.at(at + '.description', desc);
        var params = {};
        var pnames = {};
        rows(parts.params).forEach(function (pr) {
          var pd = pr.data('data');
          var pname = reader.name(pr.find('.edge-llm-param-name'), pnames, msg);
          var pat = at + '.params.' + pname;
          var prule = F.clone(pd.rule) || {};
          var type = pr.find('.edge-llm-param-type').val();
          prule.type = type;
          var min = pr.find('.edge-llm-param-min');
          var max = pr.find('.edge-llm-param-max');
          var unit = pr.find('.edge-llm-param-unit');
          var en = pr.find('.edge-llm-param-enum');
          F.put(prule, 'min', reader.number(min, msg.number));
          F.put(prule, 'max', reader.number(max, msg.number));
          F.put(prule, 'unit', textValue(unit, (pd.rule || {}).unit));
          var values = listValue(en, (pd.rule || {}).enum);
          if (values && (type === 'number' || type === 'integer')) {
            values = values.map(function (v) {
              if (!RED.validators.number()(v)) reader.problem(en, msg.number);
              return Number(v);
            });
          } else if (values && type === 'boolean') {
            values = values.map(function (v) {
              if (v !== 'true' && v !== 'false') reader.problem(en, t('problem.boolean'));
              return v === 'true';
            });
          }
          F.put(prule, 'enum', values);
          F.put(
            prule,
            'required',
            flag(pr.find('.edge-llm-param-required').prop('checked'), (pd.rule || {}).required),
          );
          reader
            .at(pat, pr.find('.edge-llm-param-name'))
            .at(pat + '.type', pr.find('.edge-llm-param-type'))
            .at(pat + '.min', min)
            .at(pat + '.max', max)
            .at(pat + '.unit', unit)
            .at(pat + '.enum', en);
          params[pname] = prule;
        });
        F.put(
          rule,
          'params',
          Object.keys(params).length || (data.rule && data.rule.params) ? params : undefined,
        );
        var mode = parts.mode.val();
        var before = data.rule || {};
        F.put(
          rule,
          'requiresApproval',
          mode === 'always' ? true : before.requiresApproval === false ? false : undefined,
        );
        var conds = [];
        if (mode !== 'no') {
          rows(parts.when).forEach(function (cr, i) {
            var crule = F.clone(cr.data('data').rule) || {};
            var cat = at + '.approvalWhen[' + i + ']';
            var param = cr.find('.edge-llm-condition-param');
            crule.param = String(param.val()).trim();
            if (!crule.param) reader.problem(param, t('problem.no-param'));
            crule.op = cr.find('.edge-llm-condition-op').val();
            var v = cr.find('input.edge-llm-condition-value');
            crule.value = F.readValue(reader, v, msg);
            reader
              .at(cat, param)
              .at(cat + '.op', cr.find('.edge-llm-condition-op'))
              .at(cat + '.value', v);
            conds.push(crule);
          });
          if (mode === 'when' && conds.length === 0) reader.problem(parts.mode, t('problem.no-condition'));
        }
        F.put(rule, 'approvalWhen', conds.length ? conds : undefined);
        reader.at(at + '.approvalWhen', parts.mode).at(at + '.requiresApproval', parts.mode);
        var classes = r.find('.edge-llm-action-classes').first();
        F.put(rule, 'classes', listValue(classes, before.classes));
        reader.at(at + '.classes', classes);
        rule.rateLimits = [];
        rule.rateOfChange = [];
        byUid[data.uid] = { name: name, rule: rule, before: before };
        acts[name] = rule;
      });
      out.actions = acts;

      var policyLimits = [];
      rows(limits).forEach(function (r) {
        var d = r.data('data');
        var scope = r.find('.edge-llm-limit-scope');
        var kind = r.find('.edge-llm-limit-kind').val();
        var owner = scope.val() ? byUid[scope.val()] : undefined;
        var lrule = F.clone(d.rule) || {};
        var by = r.find('.edge-llm-limit-by');
        var target;
        if (kind === 'change') {
          if (!owner) {
            reader.problem(scope, t('problem.change-needs-action'));
            return;
          }
          target = owner.rule.rateOfChange;
          ['per', 'max', 'windowSeconds', 'capacity', 'refillPerSecond'].forEach(function (k) {
            delete lrule[k];
          });
          lrule.param = String(r.find('.edge-llm-limit-param').val()).trim();
          F.put(lrule, 'maxPerSecond', reader.number(r.find('.edge-llm-limit-maxPerSecond'), msg.number));
        } else {
          target = owner ? owner.rule.rateLimits : policyLimits;
          delete lrule.param;
          delete lrule.maxPerSecond;
          lrule.per = r.find('.edge-llm-limit-per').val();
          var pair = kind === 'window' ? ['max', 'windowSeconds'] : ['capacity', 'refillPerSecond'];
          var other = kind === 'window' ? ['capacity', 'refillPerSecond'] : ['max', 'windowSeconds'];
          other.forEach(function (k) {
            delete lrule[k];
          });
          F.put(
            lrule,
            pair[0],
            reader.number(
              r.find(kind === 'window' ? '.edge-llm-limit-max' : '.edge-llm-limit-capacity'),
              msg.number,
            ),
          );
          F.put(
            lrule,
            pair[1],
            reader.number(
              r.find(kind === 'window' ? '.edge-llm-limit-windowSeconds' : '.edge-llm-limit-refill'),
              msg.number,
            ),
          );
        }
        F.put(lrule, 'by', listValue(by, (d.rule || {}).by));
        var lat =
          (owner ? 'policy.actions.' + owner.name : 'policy') +
          (kind === 'change' ? '.rateOfChange[' : '.rateLimits[') +
          target.length +
          ']';
        reader
          .at(lat, scope)
          .at(lat + '.per', r.find('.edge-llm-limit-per'))
          .at(lat + '.by', by)
          .at(lat + '.param', r.find('.edge-llm-limit-param'))
          .at(lat + '.maxPerSecond', r.find('.edge-llm-limit-maxPerSecond'))
          .at(lat + '.max', r.find('.edge-llm-limit-max'))
          .at(lat + '.windowSeconds', r.find('.edge-llm-limit-windowSeconds'))
          .at(lat + '.capacity', r.find('.edge-llm-limit-capacity'))
          .at(lat + '.refillPerSecond', r.find('.edge-llm-limit-refill'));
        target.push(lrule);
      });
      Object.keys(byUid).forEach(function (u) {
        var a = byUid[u];
        F.put(a.rule, 'rateLimits', arrayValue(a.rule.rateLimits, a.before.rateLimits));
        F.put(a.rule, 'rateOfChange', arrayValue(a.rule.rateOfChange, a.before.rateOfChange));
      });
      F.put(out, 'rateLimits', arrayValue(policyLimits, policy.rateLimits));

      var ils = [];
      var ids = {};
      rows(interlocks).forEach(function (r, i) {
        var d = r.data('data');
        var before = d.rule || {};
        var il = F.clone(before) || {};
        var at = 'policy.interlocks[' + i + ']';
        var idEl = r.find('.edge-llm-interlock-id');
        il.id = reader.name(idEl, ids, msg);
        reader.at(at, idEl);
        var actEl = r.find('.edge-llm-interlock-actions');
        var wanted = listValue(actEl, before.when && before.when.action);
        var when = il.when || {};
        F.put(
          when,
          'action',
          wanted && wanted.length === 1 && !(before.when && Array.isArray(before.when.action))
            ? wanted[0]
            : wanted,
        );
        F.put(il, 'when', Object.keys(when).length || before.when ? when : undefined);
        reader.at(at + '.when', actEl);
        var path = r.find('input.edge-llm-interlock-path');
        if (path.length) {
          var single = !Array.isArray(before.require);
          var c = F.clone(single ? before.require : before.require[0]) || {};
          var cat = at + (single ? '.require' : '.require[0]');
          c.source = path.typedInput('type');
          c.path = path.typedInput('value');
          c.op = r.find('.edge-llm-interlock-op').val();
          var v = r.find('input.edge-llm-interlock-value');
          c.value = F.readValue(reader, v, msg);
          var age = r.find('.edge-llm-interlock-maxAge');
          var ts = r.find('.edge-llm-interlock-timestamp');
          F.put(c, 'maxAgeSeconds', reader.number(age, msg.number));
          F.put(
            c,
            'timestampPath',
            textValue(ts, (single ? before.require || {} : before.require[0]).timestampPath),
          );
          reader
            .at(cat, path)
            .at(cat + '.path', path)
            .at(cat + '.source', path)
            .at(cat + '.op', r.find('.edge-llm-interlock-op'))
            .at(cat + '.value', v)
            .at(cat + '.maxAgeSeconds', age)
            .at(cat + '.timestampPath', ts);
          il.require = single ? c : [c];
        }
        var m = r.find('.edge-llm-interlock-message');
        F.put(il, 'message', textValue(m, before.message));
        reader.at(at + '.message', m);
        ils.push(il);
      });
      F.put(out, 'interlocks', arrayValue(ils, policy.interlocks));

      var ap = F.clone(policy.approval) || {};
      var apBefore = policy.approval || {};
      F.put(ap, 'classes', listValue(apClasses, apBefore.classes));
      F.put(ap, 'timeoutSeconds', reader.number(apTimeout, msg.number));
      F.put(ap, 'maxPending', reader.number(apPending, msg.number));
      F.put(out, 'approval', Object.keys(ap).length || policy.approval ? ap : undefined);
      reader
        .at('policy.approval.classes', apClasses)
        .at('policy.approval.timeoutSeconds', apTimeout)
        .at('policy.approval.maxPending', apPending);
      return out;
    }

    return { show: show, read: read };
  }

  window.EdgeLlmPolicyForm = { build: build };
})();
