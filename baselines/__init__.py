"""Classical baselines under the model contract, one module each: random forest (:mod:`baselines.forest`),
XGBoost (:mod:`baselines.xgb`), LightGBM (:mod:`baselines.lgbm`) and the dummy reference (:mod:`baselines.dummy`);
:mod:`baselines.boosting` holds what the two boosters share."""
