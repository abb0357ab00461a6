"""A synthetic marketplace for measuring tables/matching.py: workers and open projects whose texts
look like the real ones (skills from a ~200-skill vocabulary, some far more common than others,
bios of ~30 words), reproducible from a seed. Used by the benchmark and nothing in production."""

from __future__ import annotations

import random
import uuid

from tables.matching import ProjectInput, WorkerInput, project_text, worker_text

_SKILL_STEMS = """
python, java, javascript, typescript, go, rust, c++, c#, ruby, php, kotlin, swift, scala, r,
elixir, haskell, perl, dart, lua, sql, node.js, react, vue, angular, svelte, next.js, django,
flask, fastapi, spring boot, rails, laravel, express, asp.net, flutter, react native, graphql,
rest api, postgresql, mysql, mongodb, redis, elasticsearch, kafka, rabbitmq, docker, kubernetes,
terraform, ansible, aws, azure, google cloud, linux, bash, git, ci/cd, machine learning,
deep learning, data science, pandas, numpy, pytorch, tensorflow, computer vision,
natural language processing, data engineering, spark, airflow, tableau, power bi, excel,
statistics, web scraping, selenium, testing, cypress, security, penetration testing, blockchain,
solidity, smart contracts, unity, unreal engine, game design, ios, android, wordpress, shopify,
woocommerce, seo, copywriting, technical writing, translation, proofreading, ui design,
ux research, figma, photoshop, illustrator, logo design, video editing, after effects,
3d modeling, blender, animation, motion graphics, product management, project management,
scrum, agile coaching, customer support, sales, lead generation, email marketing,
social media marketing, content strategy, accounting, bookkeeping, financial modeling,
legal research, recruiting, virtual assistant, data entry, transcription, voice over,
music production, podcast editing, photography, embedded systems, fpga, iot, robotics,
networking, system administration, devops, site reliability, microservices, serverless,
system design, front end, back end, full stack, api integration, stripe, salesforce, hubspot,
sap, erp, crm, chatbots, llm, prompt engineering, opencv, matlab, latex, quantum computing,
bioinformatics, gis, cad, solidworks, autocad, architecture, interior design, ecommerce,
marketplace, payments, fintech, healthtech, edtech, web3, nft, ar/vr, electron, qt, webassembly,
webrtc, websockets, oauth, jwt, performance tuning, accessibility, localization, i18n, seo audit,
market research, business analysis, pitch decks, grant writing, resume writing
"""
SKILLS: tuple[str, ...] = tuple(s.strip() for s in _SKILL_STEMS.split(",") if s.strip())

_WORD_TEXT = """
experienced reliable detail oriented deliver projects clients startups enterprise teams
remote communication deadlines quality scalable maintainable clean code documentation
years building products customers users design develop implement optimize migrate integrate
automate analyze research write review test deploy monitor support improve modern fast secure
passionate creative problem solving collaborative independent agile iterative focus results
growth revenue conversion performance dashboards reports pipelines platforms applications
websites mobile apps services tools workflows systems infrastructure cloud data content brand
strategy campaigns audiences engagement budget timeline milestones feedback revisions
communication available weekly calls english spanish french german time zone flexible hours
long term partnership small business agency freelance portfolio references certified
"""
_WORDS = _WORD_TEXT.split()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def pick_skills(rng: random.Random, low: int, high: int) -> list[str]:
    """Between `low` and `high` distinct skills, sorted."""
    # Zipf-like popularity: the first skills in the list appear far more often than the last.
    weights = [1.0 / (rank + 5) for rank in range(len(SKILLS))]
    chosen: set[str] = set()
    wanted = rng.randint(low, high)
    while len(chosen) < wanted:
        chosen.add(rng.choices(SKILLS, weights)[0])
    return sorted(chosen)


def filler_text(rng: random.Random, count: int, skills: list[str]) -> str:
    """`count` words of the bios' vocabulary with up to two of `skills` among them."""
    words = rng.choices(_WORDS, k=count)
    for skill in rng.sample(skills, k=min(2, len(skills))):
        words.insert(rng.randrange(len(words) + 1), skill)
    return " ".join(words)


def synthetic_corpus(
    workers: int, projects: int, seed: int = 7
) -> tuple[list[WorkerInput], list[ProjectInput]]:
    """`workers` workers (3-8 skills, ~30-word bios, 30% without reviews) and `projects`
    projects (2-5 skills, ~40-word descriptions), the same for the same seed."""
    rng = random.Random(seed)
    availability = ("available", "available", "busy", "unavailable")
    worker_inputs = []
    for _ in range(workers):
        skills = pick_skills(rng, 3, 8)
        headline = f"{rng.choice(skills)} specialist"
        text = worker_text(
            skills, headline, filler_text(rng, 30, skills), filler_text(rng, 8, skills)
        )
        stars = None if rng.random() < 0.3 else round(rng.uniform(2.5, 5.0), 4)
        worker_inputs.append(WorkerInput(_uuid(rng), text, stars, rng.choice(availability)))
    project_inputs = []
    for _ in range(projects):
        skills = pick_skills(rng, 2, 5)
        title = f"Need a {rng.choice(skills)} expert for {rng.choice(_WORDS)} {rng.choice(_WORDS)}"
        text = project_text(title, filler_text(rng, 40, skills), skills)
        project_inputs.append(ProjectInput(_uuid(rng), text))
    return worker_inputs, project_inputs
